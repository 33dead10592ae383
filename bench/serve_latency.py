"""Latency of one-image prediction requests on loopback: `mnist serve` against
`mlflow models serve`, both serving the same registered model version.

    python -m bench.serve_latency [--model REF (default: the champion)] [--requests 1000]
                                  [--concurrency 8]

Uses the tracking store of MLFLOW_TRACKING_URI (or ./mlflow.db) and the real MNIST test
images (MNIST_DATA_DIR, else ../shared/data/mnist). The load generator runs on the same
machine as the server, so both compete for its cores: compare the two rows, not absolutes.
Writes bench/results/serve_latency.{json,md}.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

# isort: off
import mnist.env  # noqa: F401  (first: env defaults)

# isort: on
import httpx
import numpy as np

from app.serve import ModelHolder
from mnist import data, registry
from tests.servers import free_port, start_server, stop_server

RESULTS = Path(__file__).with_name("results")
BIN = Path(sys.executable).parent


def load(url: str, bodies: list[dict], requests: int, concurrency: int) -> list[float]:
    """`requests` POSTs of one image each, `concurrency` at a time; latencies in ms."""
    per_worker = [
        requests // concurrency + (i < requests % concurrency) for i in range(concurrency)
    ]

    def worker(count: int, offset: int) -> list[float]:
        out = []
        with httpx.Client(timeout=30) as client:
            for i in range(count):
                started = time.perf_counter()
                response = client.post(url, json=bodies[(offset + i) % len(bodies)])
                out.append((time.perf_counter() - started) * 1000)
                response.raise_for_status()
        return out

    with ThreadPoolExecutor(concurrency) as pool:
        chunks = pool.map(worker, per_worker, range(0, requests * 7, 7)[:concurrency])
    return [ms for chunk in chunks for ms in chunk]


def summary(name: str, latencies: list[float], seconds: float) -> dict:
    q = np.percentile(latencies, [50, 90, 99])
    return {"server": name, "requests": len(latencies), "p50_ms": round(q[0], 2),
            "p90_ms": round(q[1], 2), "p99_ms": round(q[2], 2),
            "mean_ms": round(statistics.fmean(latencies), 2),
            "throughput_rps": round(len(latencies) / seconds, 1)}  # fmt: skip


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=f"models:/{registry.MODEL_NAME}@champion")
    p.add_argument("--requests", type=int, default=1000)
    p.add_argument("--concurrency", type=int, default=8)
    p.add_argument("--warmup", type=int, default=50)
    args = p.parse_args()

    pinned = ModelHolder(args.model)._resolve().uri  # the same version for both servers
    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist"))
    images = data.load(data_dir).test.images[:200].astype(float)
    logs = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    rows = []
    servers = {
        "mnist serve": (
            ["mnist", "serve", "--model", args.model, "--poll-seconds", "0"], "/healthz",
            "/predict", lambda im: {"pixels": [im.tolist()]},
        ),
        "mlflow models serve": (
            ["mlflow", "models", "serve", "-m", pinned, "--env-manager", "local", "-h",
             "127.0.0.1"], "/ping", "/invocations", lambda im: {"inputs": [im.tolist()]},
        ),
    }  # fmt: skip
    for name, (cmd, health, path, body) in servers.items():
        port = free_port()
        flag = ["--port", str(port)] if cmd[0] == "mnist" else ["-p", str(port)]
        health_url = f"http://127.0.0.1:{port}{health}"
        proc = start_server([str(BIN / cmd[0]), *cmd[1:], *flag], health_url,
                            logs / f"{cmd[0]}.log", {})  # fmt: skip
        try:
            url = f"http://127.0.0.1:{port}{path}"
            bodies = [body(im) for im in images]
            load(url, bodies, args.warmup, 1)
            started = time.perf_counter()
            latencies = load(url, bodies, args.requests, args.concurrency)
            rows.append(summary(name, latencies, time.perf_counter() - started))
        finally:
            stop_server(proc)
        print(json.dumps(rows[-1]), flush=True)

    RESULTS.mkdir(exist_ok=True)
    meta = {"model": pinned, "requests": args.requests, "concurrency": args.concurrency}
    (RESULTS / "serve_latency.json").write_text(json.dumps({**meta, "results": rows}, indent=2))
    header = (
        "| server | requests | p50 ms | p90 ms | p99 ms | mean ms | req/s |\n"
        "|---|---|---|---|---|---|---|\n"
    )
    table = header + "".join(
        f"| {r['server']} | {r['requests']} | {r['p50_ms']} | {r['p90_ms']} | {r['p99_ms']} | "
        f"{r['mean_ms']} | {r['throughput_rps']} |\n"
        for r in rows
    )
    (RESULTS / "serve_latency.md").write_text(table)
    print(f"\n{pinned}, {args.requests} one-image requests at concurrency {args.concurrency}\n")
    print(table)


if __name__ == "__main__":
    main()
