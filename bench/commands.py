"""How long people wait for the everyday commands, each a whole process as a user runs it.

    python -m bench.commands [--model REF (default: the champion)] [--repeats 5] [--rounds 7]

Uses the tracking store of MLFLOW_TRACKING_URI (or ./mlflow.db) and the first MNIST test image
as a PNG (MNIST_DATA_DIR, else ../shared/data/mnist). Each command runs `--repeats` times in
a row after one untimed run; medians with (min-max). Then `mnist predict` through ONNX Runtime
and through Keras (`--runtime`), from the registry and from a local copy of the model's
directory: `hyperfine` times each of the four once per round, in turn, for `--rounds` rounds
after one untimed round, so that the machine's load falls on all alike. Writes
bench/results/commands.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import shutil
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
from PIL import Image

from app.serve import ModelHolder
from bench import machine, save
from mnist import data, registry

MNIST = str(Path(sys.executable).parent / "mnist")


def timed(args: list[str], repeats: int) -> list[float]:
    """Wall seconds of `mnist ARGS`, `repeats` times after one untimed run."""
    times = []
    for i in range(repeats + 1):
        started = time.perf_counter()
        out = subprocess.run([MNIST, *args], capture_output=True, text=True, check=False)
        if out.returncode:
            raise SystemExit(f"mnist {' '.join(args)} failed:\n{out.stderr[-2000:]}")
        if i:
            times.append(round(time.perf_counter() - started, 2))
    return times


def hyperfine(argv: list[str], out: Path) -> float:
    """Wall seconds of one run of `mnist ARGV`, as `hyperfine` measures it (no shell)."""
    subprocess.run(
        ["hyperfine", "-N", "--runs", "1", "--export-json", str(out), "--", shlex.join(argv)],
        capture_output=True,
        text=True,
        check=True,
    )
    return round(json.loads(out.read_text())["results"][0]["times"][0], 3)


def alternating(commands: dict[str, list[str]], rounds: int, work: Path) -> dict[str, list]:
    """Each command once per round, in turn (A, B, C, D, A, B, ...), after one untimed round."""
    times: dict[str, list[float]] = {name: [] for name in commands}
    for i in range(rounds + 1):
        for name, argv in commands.items():
            took = hyperfine([MNIST, *argv], work / "hyperfine.json")
            if i:
                times[name].append(took)
    return times


def runtimes(model: str, png: Path, rounds: int, work: Path) -> tuple[list[dict], str]:
    """`mnist predict` of one PNG through ONNX and Keras, from the registry and from a local
    model directory: rows and their table."""
    from mlflow.artifacts import download_artifacts

    pinned = ModelHolder(model)._resolve().uri  # the version the alias names now
    local = download_artifacts(pinned, dst_path=str(work / "model"))
    if not (Path(local) / "data" / "model.onnx").is_file():
        raise SystemExit(f"{pinned} has no ONNX copy: log a model with this version's code")
    commands = {
        f"{where}, {runtime}": ["predict", "--model", ref, "--runtime", runtime, str(png)]
        for where, ref in (("registry", model), ("local directory", local))
        for runtime in ("onnx", "keras")
    }
    times = alternating(commands, rounds, work)
    rows = [
        {"command": name, "median_s": round(statistics.median(t), 2), "times_s": t}
        for name, t in times.items()
    ]
    table = (
        f"`mnist predict` of one PNG, `--model {model}` (registry) or a local copy of "
        f"{pinned}'s directory:\n\n| from, runtime | median s | min-max s |\n|---|---|---|\n"
    ) + "".join(
        f"| {r['command']} | {r['median_s']:.2f} | {min(r['times_s']):.2f}-"
        f"{max(r['times_s']):.2f} |\n"
        for r in rows
    )
    return rows, table


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", default=f"models:/{registry.MODEL_NAME}@champion")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--rounds", type=int, default=7, help="rounds of the runtime comparison")
    args = p.parse_args()
    if not shutil.which("hyperfine"):
        raise SystemExit("bench.commands needs `hyperfine` on PATH (apt-get install hyperfine)")

    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist"))
    work = Path(tempfile.mkdtemp(prefix="bench-commands-"))
    png = work / "digit.png"
    Image.fromarray(data.load(data_dir).test.images[0].astype(np.uint8)).save(png)
    commands = {
        "mnist --help": ["--help"],
        "mnist registry list": ["registry", "list"],
        "mnist registry show": ["registry", "show"],
        "mnist registry history": ["registry", "history"],
        "mnist predict (one PNG)": ["predict", "--model", args.model, str(png)],
    }
    load, rows = os.getloadavg(), []
    for name, argv in commands.items():
        times = timed(argv, args.repeats)
        rows.append({"command": name, "median_s": statistics.median(times), "times_s": times})
        print(json.dumps(rows[-1]), flush=True)
    load_runtimes = os.getloadavg()
    runtime_rows, runtime_table = runtimes(args.model, png, args.rounds, work)
    for row in runtime_rows:
        print(json.dumps(row), flush=True)
    report = {
        "model": args.model,
        "load_average_at_start": load,
        "results": rows,
        "runtimes": {
            "rounds": args.rounds,
            "load_average_at_start": load_runtimes,
            "load_average_at_end": os.getloadavg(),
            "results": runtime_rows,
        },
    }
    table = "| command | median s | min-max s |\n|---|---|---|\n" + "".join(
        f"| `{r['command']}` | {r['median_s']:.2f} | {min(r['times_s']):.2f}-"
        f"{max(r['times_s']):.2f} |\n"
        for r in rows
    )
    table += f"\n{args.repeats} runs each after an untimed one; {machine(load)}.\n\n"
    table += runtime_table + (
        f"\n`hyperfine -N --runs 1` of each in turn, {args.rounds} rounds after an untimed one; "
        f"{machine(load_runtimes)}, "
        f"{', '.join(f'{v:.2f}' for v in report['runtimes']['load_average_at_end'])} at the end.\n"
    )
    save("commands", report, table)


if __name__ == "__main__":
    main()
