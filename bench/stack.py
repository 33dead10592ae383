"""The PostgreSQL stack against the embedded default: start-up, and a retraining's wall time.

    python -m bench.stack [--repeats 3] [--profile fast]

Brings a stack up in a scratch directory on free ports (`app/stack/`, as `make stack-up`:
cold, then down and up again: warm), then times whole `mnist retrain --retrain-unchanged`
commands: embedded (temporary Prefect API, SQLite MLflow store), against the stack from the
command line (Prefect server, MLflow server with proxied artifacts, all on PostgreSQL), and
as the deployment's run taken by a worker (from `prefect deployment run` to COMPLETED).
Writes bench/results/stack.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx

from bench import machine, save
from mnist.waiting import wait_until
from tests.servers import free_port

BIN = Path(sys.executable).parent


def timed(args: list[str], env: dict[str, str], cwd: Path) -> float:
    started = time.perf_counter()
    out = subprocess.run(args, env=env, cwd=cwd, capture_output=True, text=True)
    if out.returncode:
        raise SystemExit(f"{' '.join(args)} failed:\n{out.stderr[-3000:]}")
    return round(time.perf_counter() - started, 2)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--profile", default="fast")
    args = p.parse_args()

    data_dir = str(Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist")).resolve())
    root = Path(tempfile.mkdtemp(prefix="bench-stack-"))
    root.chmod(0o755)  # PostgreSQL's user must reach the stack's directory inside
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    stack_env = {
        **clean,
        "MNIST_STACK_DIR": str(root / "stack"),
        "MNIST_STACK_PG_PORT": str(free_port()),
        "MNIST_STACK_PREFECT_PORT": str(free_port()),
        "MNIST_STACK_MLFLOW_PORT": str(free_port()),
        "MNIST_STACK_DASK_PORT": str(free_port()),
        "MNIST_STACK_DASK_HTTP_PORT": str(free_port()),
    }
    load = os.getloadavg()
    stack = [sys.executable, "-m", "app.stack"]
    cold = timed([*stack, "up"], stack_env, root)
    timed([*stack, "down"], stack_env, root)
    warm = timed([*stack, "up"], stack_env, root)
    exports = subprocess.run([*stack, "env"], env=stack_env, capture_output=True, text=True).stdout
    client = {
        **clean,
        "MNIST_DATA_DIR": data_dir,
        **{
            k: v
            for line in exports.splitlines()
            for k, _, v in [shlex.split(line[7:])[0].partition("=")]
        },
    }
    retrain = [
        str(BIN / "mnist"),
        "retrain",
        "--profile",
        args.profile,
        "--retrain-unchanged",
        "--experiment",
        "bench-stack",
        "--floor",
        "0.9",
    ]
    rows: dict[str, list[float]] = {
        "embedded": [],
        "stack, from the command line": [],
        "stack, the deployment on a worker": [],
    }
    try:
        embedded = {**clean, "MNIST_DATA_DIR": data_dir}
        (root / "embedded").mkdir()
        for _ in range(args.repeats):
            rows["embedded"].append(timed(retrain, embedded, root / "embedded"))
            rows["stack, from the command line"].append(timed(retrain, client, root))
            params = {
                "config": {"profile": args.profile, "experiment": "bench-stack"},
                "gate": {"floor": 0.9, "retrain_unchanged": True},
            }
            started = time.perf_counter()
            trigger = [
                str(BIN / "prefect"),
                "deployment",
                "run",
                "mnist-retrain/mnist-retrain",
                "--params",
                json.dumps(params),
            ]
            out = subprocess.run(trigger, env=client, capture_output=True, text=True, check=True)
            run_id = next(line.split()[-1] for line in out.stdout.splitlines() if "UUID" in line)
            api = client["PREFECT_API_URL"]

            def ended(api: str = api, run_id: str = run_id) -> str | None:
                state = httpx.get(f"{api}/flow_runs/{run_id}").json()["state"]["type"]
                return state if state in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else None

            state = wait_until(ended, 3600, 0.5)
            if state != "COMPLETED":
                raise SystemExit(f"the deployment's run ended {state}")
            rows["stack, the deployment on a worker"].append(
                round(time.perf_counter() - started, 2)
            )
            print(json.dumps({k: v[-1] for k, v in rows.items()}), flush=True)
    finally:
        subprocess.run([*stack, "down"], env=stack_env, capture_output=True)
    base = statistics.median(rows["embedded"])
    report = {
        "profile": args.profile,
        "stack_up_cold_s": cold,
        "stack_up_warm_s": warm,
        "retrain_s": rows,
        "load_average_at_start": load,
    }
    table = (
        f"`make stack-up` (PostgreSQL, Prefect and MLflow servers, one worker, the deployments): "
        f"{cold:.1f} s from nothing, {warm:.1f} s again with its state.\n\n"
        f"| `mnist retrain --profile {args.profile}` | median s | min-max s | against embedded |\n"
        "|---|---|---|---|\n"
        + "".join(
            f"| {name} | {statistics.median(t):.1f} | {min(t):.1f}-{max(t):.1f} | "
            f"{statistics.median(t) / base:.2f}x |\n"
            for name, t in rows.items()
        )
        + f"\n{args.repeats} runs each, interleaved; {machine(load)}.\n"
    )
    save("stack", report, table)


if __name__ == "__main__":
    main()
