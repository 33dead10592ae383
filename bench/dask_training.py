"""Sweeps and ensembles on this machine's cores (a local Dask cluster).

    python -m bench.dask_training [--trials 4] [--rounds 1] [--train-limit 20000]
                                  [--seconds 8] [--skip-sweep] [--skip-serving]

1. Trials per hour: the same sweep (space `default`, each trial cut to one epoch on
   `--train-limit` MNIST images) on a local cluster of 1 and of 2 worker processes, alternating
   (1, 2, 1, 2, ... for `--rounds`), each in a fresh store: trials per hour over the study's
   trials (first start to last end, from Optuna's own timestamps) and over the whole command.
2. Serving an ensemble beside a single model: `mnist ensemble --members 2` and `mnist train`
   of the same recipe (`small`, 2 epochs, `--train-limit` images), each registered, served by
   `mnist serve` (its ONNX copy), `hey` one-image JSON requests at 1 and 16 clients for
   `--seconds` each: requests/s and latency percentiles.

MNIST from MNIST_DATA_DIR, else ../shared/data/mnist. Writes bench/results/dask_training.{json,md}.
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
from bench import machine, save
from bench.serve_latency import _start, hey
from tests.servers import stop_server

BIN = Path(sys.executable).parent


def _env(work: Path) -> dict[str, str]:
    data = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist")).resolve()
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    return {
        **clean,
        "MLFLOW_TRACKING_URI": f"sqlite:///{work / 'mlflow.db'}",
        "MNIST_DATA_DIR": str(data),
    }


def _mnist(args: list[str], work: Path) -> float:
    """Seconds the command `mnist ARGS` took, in `work` with its own store."""
    started = time.perf_counter()
    out = subprocess.run(
        [str(BIN / "mnist"), *args], cwd=work, env=_env(work), capture_output=True, text=True
    )
    if out.returncode:
        raise SystemExit(f"mnist {' '.join(args)} failed: {out.stderr[-2000:]}")
    return time.perf_counter() - started


def sweep(workers: int, trials: int, limit: int) -> dict:
    """One sweep on `workers` local workers: its trials' span and the whole command's."""
    import optuna

    with tempfile.TemporaryDirectory(prefix="bench-sweep-") as scratch:
        work = Path(scratch)
        options = ["--space", "default", "--trials", str(trials), "--dask-workers", str(workers)]
        options += ["--epochs", "1", "--train-limit", str(limit), "--test-limit", "2000"]
        whole = _mnist(["sweep", *options, "--no-register", "--name", "bench"], work)
        study = optuna.load_study(
            study_name="bench", storage=f"sqlite:///{work / 'mnist-sweeps.db'}"
        )
        starts = [t.datetime_start for t in study.trials if t.datetime_start]
        ends = [t.datetime_complete for t in study.trials if t.datetime_complete]
        span = (max(ends) - min(starts)).total_seconds()
        states = [t.state.name.lower() for t in study.trials]
    return {
        "workers": workers,
        "trials": trials,
        "states": states,
        "trials_seconds": round(span, 1),
        "command_seconds": round(whole, 1),
        "trials_per_hour": round(trials / span * 3600, 1),
        "trials_per_hour_whole": round(trials / whole * 3600, 1),
    }


def serving(limit: int, seconds: float, work: Path) -> list[dict]:
    """The ensemble of two and a single model of the same recipe, each served and loaded."""
    recipe = ["--model", "small", "--epochs", "2", "--train-limit", str(limit)]
    trained = {
        "ensemble of 2": _mnist(
            ["ensemble", "--members", "2", *recipe, "--registered-model", "ens"], work
        ),
        "single model": _mnist(["train", *recipe, "--registered-model", "single"], work),
    }
    body = work / "one.json"
    from mnist.data import load

    image = load(Path(_env(work)["MNIST_DATA_DIR"])).test.images[0].tolist()
    body.write_text(json.dumps({"pixels": image}))
    rows = []
    os.environ.update({k: v for k, v in _env(work).items() if k == "MLFLOW_TRACKING_URI"})
    for name, ref in (("ensemble of 2", "models:/ens/1"), ("single model", "models:/single/1")):
        proc, base = _start(
            [str(BIN / "mnist"), "serve", "--model", ref, "--no-prediction-log"],
            "/healthz",
            work,
            name.split()[0],
        )
        try:
            hey(f"{base}/predict", body, 2, 4)  # warm-up
            for clients in (1, 16):
                rows.append(
                    {
                        "model": name,
                        "command_seconds": round(trained[name], 1),
                        **hey(f"{base}/predict", body, seconds, clients),
                    }
                )
        finally:
            stop_server(proc)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--rounds", type=int, default=1)
    parser.add_argument("--train-limit", type=int, default=20000)
    parser.add_argument("--seconds", type=float, default=8)
    parser.add_argument("--skip-sweep", action="store_true")
    parser.add_argument("--skip-serving", action="store_true")
    args = parser.parse_args()
    load = os.getloadavg()
    report: dict = {"machine": machine(load), "sweeps": [], "serving": []}
    if not args.skip_sweep:
        for _ in range(args.rounds):
            for workers in (1, 2):
                report["sweeps"].append(sweep(workers, args.trials, args.train_limit))
                print(report["sweeps"][-1], flush=True)
    if not args.skip_serving:
        with tempfile.TemporaryDirectory(prefix="bench-ensemble-") as scratch:
            report["serving"] = serving(args.train_limit, args.seconds, Path(scratch))
    lines = [f"# Sweeps and ensembles on a local Dask cluster\n\n{report['machine']}.\n"]
    if report["sweeps"]:
        lines.append(
            "| workers | trials (states) | trials' span s | command s | trials/hour "
            "| trials/hour, whole command |"
        )
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for r in report["sweeps"]:
            states = ", ".join(f"{r['states'].count(s)} {s}" for s in sorted(set(r["states"])))
            cells = [r["workers"], f"{r['trials']} ({states})", r["trials_seconds"]]
            cells += [r["command_seconds"], r["trials_per_hour"], r["trials_per_hour_whole"]]
            lines.append("| " + " | ".join(map(str, cells)) + " |")
        by = {
            w: [r["trials_per_hour"] for r in report["sweeps"] if r["workers"] == w] for w in (1, 2)
        }
        if by[1] and by[2]:
            ratio = statistics.median(by[2]) / statistics.median(by[1])
            lines.append(
                f"\n2 workers against 1, trials per hour (medians over {args.rounds} round(s)): "
                f"{ratio:.2f}x\n"
            )
    if report["serving"]:
        lines.append("| model | clients | requests/s | p50 ms | p99 ms | errors |")
        lines.append("| --- | --- | --- | --- | --- | --- |")
        for r in report["serving"]:
            cells = [r["model"], r["concurrency"], r["requests_per_s"], r["p50_ms"], r["p99_ms"]]
            lines.append("| " + " | ".join(map(str, [*cells, r["errors"]])) + " |")
    save("dask_training", report, "\n".join(lines) + "\n")


if __name__ == "__main__":
    main()
