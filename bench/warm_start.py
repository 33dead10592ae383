"""Warm start against full retrain on the same added data, and how much added data must weigh.

    python -m bench.warm_start [--repeats 3] [--shares 0,0.05,0.1,0.2] [--added 300]

In a scratch store: a champion trained on MNIST alone (`default` recipe), then `--added`
mirror-written digits (tests/sources.py) added with `mnist data add`. Then, as whole
`mnist train` commands on MNIST plus the added data:
- full retrain (`default`: 5 epochs from scratch) against warm start (`--init-from` the
  champion, with the fine-tuning defaults: 2 epochs at a peak learning rate of 3e-3 over
  20,000 MNIST images and the added data at a share of 0.5), `--repeats` times each,
  alternating;
- full retrains with each `--added-share` of `--shares` (once each): how much the added
  samples must weigh in an epoch to move the model.
Reports wall time of the whole command, training time (the sum of the epochs), MNIST test
accuracy, the added holdout's accuracy, and the accuracy on 500 mirrored digits that were
never added (the new handwriting's exam). Writes bench/results/warm_start.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mnist.env  # noqa: F401  (first: env defaults)

# isort: on
import numpy as np

from bench import machine, save
from mnist import data, evaluation, preprocess, tracking
from tests.sources import SOURCE, mirror_writing

MNIST = str(Path(sys.executable).parent / "mnist")
NAME = "bench-warm"


def run(args: list[str], env: dict[str, str], cwd: Path) -> tuple[float, str]:
    started = time.perf_counter()
    out = subprocess.run([MNIST, *args], capture_output=True, text=True, env=env, cwd=cwd)
    if out.returncode:
        raise SystemExit(f"mnist {' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return time.perf_counter() - started, out.stdout


def measure(args: list[str], env: dict[str, str], cwd: Path, exam) -> dict:
    """One whole `mnist train` command and what its run recorded."""
    wall, out = run(["train", "--no-register", *args], env, cwd)
    fields = dict(line.split(":", 1) for line in out.splitlines() if ":" in line)
    run_id = fields["MLflow run"].strip()
    model_uri = fields["model"].split()[0]
    client = tracking.client()
    metrics = client.get_run(run_id).data.metrics
    epochs = client.get_metric_history(run_id, "epoch_seconds")
    model = tracking.load_model(model_uri)
    exam_accuracy = evaluation.evaluate(model, exam).accuracy
    return {
        "wall_s": round(wall, 2),
        "train_s": round(sum(m.value for m in epochs), 2),
        "test_accuracy": metrics["test_accuracy"],
        "holdout_accuracy": metrics.get("holdout_accuracy"),
        "exam_accuracy": exam_accuracy,
        "run_id": run_id,
    }


def median(rows: list[dict], key: str) -> float:
    return statistics.median(r[key] for r in rows)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--shares", default="0,0.05,0.1,0.2")
    p.add_argument("--added", type=int, default=300)
    args = p.parse_args()

    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist")).resolve()
    mnist = data.load(data_dir)
    work = Path(tempfile.mkdtemp(prefix="bench-warm-"))
    uri = f"sqlite:///{work / 'mlflow.db'}"
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": uri,
        "MNIST_DATA_DIR": str(data_dir),
        "MNIST_REGISTERED_MODEL": NAME,
        "MNIST_EXPERIMENT": "bench-warm",
    }
    os.environ["MLFLOW_TRACKING_URI"] = uri
    exam_x, exam_y = mirror_writing(mnist, 0, 500)
    exam = preprocess.Arrays(exam_x.astype(np.float32), preprocess.one_hot(exam_y))
    added_x, added_y = mirror_writing(mnist, 500, args.added)
    load = os.getloadavg()

    champion_s, _ = run(["retrain", "--no-added-data"], env, work)
    champion = evaluation.evaluate(tracking.load_model(f"models:/{NAME}@champion"), exam)
    print(f"champion: {champion_s:.1f} s, exam accuracy {champion.accuracy:.4f}", flush=True)
    np.savez(work / "mirror.npz", x=added_x, y=added_y)
    run(["data", "add", str(work / "mirror.npz"), "--source", SOURCE], env, work)

    full, warm = [], []
    for _ in range(args.repeats):
        full.append(measure([], env, work, exam))
        print("full", json.dumps(full[-1]), flush=True)
        warm.append(measure(["--init-from", f"models:/{NAME}@champion"], env, work, exam))
        print("warm", json.dumps(warm[-1]), flush=True)
    shares = []
    for share in [float(s) for s in args.shares.split(",") if s]:
        shares.append(
            {"added_share": share, **measure(["--added-share", str(share)], env, work, exam)}
        )
        print("share", json.dumps(shares[-1]), flush=True)

    report = {
        "added": args.added,
        "champion_exam_accuracy": champion.accuracy,
        "full": full,
        "warm": warm,
        "shares": shares,
        "load_average_at_start": load,
    }
    keys = ("wall_s", "train_s", "test_accuracy", "holdout_accuracy", "exam_accuracy")
    f = {k: median(full, k) for k in keys}
    w = {k: median(warm, k) for k in keys}
    table = (
        f"{args.added} mirror-written digits added; the "
        f"champion (MNIST only) reads {champion.accuracy:.2%} of the 500-digit exam.\n\n"
        "| | whole command s | training s | MNIST test | added holdout | exam (500 never added) |\n"
        "|---|---|---|---|---|---|\n"
        f"| full retrain (`default`, 5 epochs) | {f['wall_s']:.1f} | {f['train_s']:.1f} | "
        f"{f['test_accuracy']:.4f} | {f['holdout_accuracy']:.4f} | {f['exam_accuracy']:.4f} |\n"
        "| warm start (2 epochs over 20,000 MNIST + added at 0.5, lr 3e-3) | "
        f"{w['wall_s']:.1f} | {w['train_s']:.1f} | "
        f"{w['test_accuracy']:.4f} | {w['holdout_accuracy']:.4f} | {w['exam_accuracy']:.4f} |\n"
        f"| warm / full | {w['wall_s'] / f['wall_s']:.2f}x | {w['train_s'] / f['train_s']:.2f}x "
        f"| {100 * (w['test_accuracy'] - f['test_accuracy']):+.2f} points | "
        f"{100 * (w['holdout_accuracy'] - f['holdout_accuracy']):+.2f} points | "
        f"{100 * (w['exam_accuracy'] - f['exam_accuracy']):+.2f} points |\n\n"
        f"Medians of {args.repeats} runs each, alternating; {machine(load)}.\n\n"
        "| `--added-share` (full retrain) | MNIST test | added holdout | exam |\n"
        "|---|---|---|---|\n"
        + "".join(
            f"| {s['added_share']} | {s['test_accuracy']:.4f} | "
            f"{s['holdout_accuracy']:.4f} | {s['exam_accuracy']:.4f} |\n"
            for s in shares
        )
    )
    save("warm_start", report, table)


if __name__ == "__main__":
    main()
