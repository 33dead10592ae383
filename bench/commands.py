"""How long people wait for the everyday commands, each a whole process as a user runs it.

    python -m bench.commands [--model REF (default: the champion)] [--repeats 5]

Uses the tracking store of MLFLOW_TRACKING_URI (or ./mlflow.db) and the first MNIST test image
as a PNG (MNIST_DATA_DIR, else ../shared/data/mnist). Each command runs `--repeats` times in
a row after one untimed run; medians with (min-max). Writes bench/results/commands.{json,md}.
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
from PIL import Image

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


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=f"models:/{registry.MODEL_NAME}@champion")
    p.add_argument("--repeats", type=int, default=5)
    args = p.parse_args()

    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist"))
    png = Path(tempfile.mkdtemp(prefix="bench-commands-")) / "digit.png"
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
    report = {"model": args.model, "load_average_at_start": load, "results": rows}
    table = "| command | median s | min-max s |\n|---|---|---|\n" + "".join(
        f"| `{r['command']}` | {r['median_s']:.2f} | {min(r['times_s']):.2f}-"
        f"{max(r['times_s']):.2f} |\n"
        for r in rows
    )
    table += f"\n{args.repeats} runs each after an untimed one; {machine(load)}.\n"
    save("commands", report, table)


if __name__ == "__main__":
    main()
