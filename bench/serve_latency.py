"""Serving under load: one-image JSON requests from `hey` (a compiled load generator) at
several concurrencies, against `mnist serve` (micro-batching on, and off with
`--batch-images 1`) and `mlflow models serve`, all serving the same model version.

    python -m bench.serve_latency [--model REF (default: the champion)] [--seconds 8]
                                  [--concurrency 1,4,16,64,128]

Uses the tracking store of MLFLOW_TRACKING_URI (or ./mlflow.db) and the first MNIST test
image (MNIST_DATA_DIR, else ../shared/data/mnist). `hey` comes from Debian's package
(`apt-get install hey`). Load generator and server share this machine's cores: compare rows
measured in one run. Writes bench/results/serve_latency.{json,md,png}.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mnist.env  # noqa: F401  (first: env defaults)

# isort: on
import httpx

from app.serve import ModelHolder
from bench import RESULTS, machine, save
from mnist import data, registry
from tests.servers import free_port, start_server, stop_server

BIN = Path(sys.executable).parent
PERCENTILES = (50, 90, 99)


def hey(url: str, body: Path, seconds: float, concurrency: int) -> dict:
    """`hey` for `seconds` at `concurrency`: requests/s, latency percentiles (ms), errors."""
    out = subprocess.run(
        [
            "hey",
            "-z",
            f"{seconds}s",
            "-c",
            str(concurrency),
            "-m",
            "POST",
            "-T",
            "application/json",
            "-D",
            str(body),
            url,
        ],
        capture_output=True,
        text=True,
        check=True,
    ).stdout
    found = {int(p): float(s) * 1000 for p, s in re.findall(r"(\d+)%+ in ([\d.]+) secs", out)}
    head, _, failures = out.partition("Error distribution:")
    statuses = dict(re.findall(r"\[(\d+)\]\s+(\d+) responses", head))
    return {
        "concurrency": concurrency,
        "requests_per_s": round(float(re.search(r"Requests/sec:\s+([\d.]+)", out)[1]), 1),
        **{f"p{p}_ms": round(found[p], 2) for p in PERCENTILES},
        "ok": int(statuses.pop("200", 0)),
        "errors": sum(map(int, statuses.values()))  # other statuses, and no answer at all
        + sum(int(n) for n in re.findall(r"\[(\d+)\]", failures)),
    }


def servers(model: str, pinned: str) -> dict[str, tuple[list[str], str, str, str]]:
    """name -> (command, health path, predict path, body key)."""
    mnist = [str(BIN / "mnist"), "serve", "--model", model, "--poll-seconds", "0"]
    mlflow = [
        str(BIN / "mlflow"),
        "models",
        "serve",
        "-m",
        pinned,
        "--env-manager",
        "local",
        "-h",
        "127.0.0.1",
    ]
    return {
        "mnist serve": (mnist, "/healthz", "/predict", "pixels"),
        "mnist serve --batch-images 1": (
            [*mnist, "--batch-images", "1"],
            "/healthz",
            "/predict",
            "pixels",
        ),
        "mlflow models serve": (mlflow, "/ping", "/invocations", "inputs"),
    }


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (lat, rps) = plt.subplots(1, 2, figsize=(11, 4.2))
    for name in dict.fromkeys(r["server"] for r in rows):
        mine = [r for r in rows if r["server"] == name]
        c = [r["concurrency"] for r in mine]
        (line,) = lat.plot(c, [r["p50_ms"] for r in mine], "o-", label=f"{name} p50")
        lat.plot(c, [r["p99_ms"] for r in mine], "s--", color=line.get_color(), label=f"{name} p99")
        rps.plot(c, [r["requests_per_s"] for r in mine], "o-", label=name)
    levels = sorted({r["concurrency"] for r in rows})
    for ax in (lat, rps):
        ax.set_xscale("log", base=2)
        ax.set_xticks(levels, [str(c) for c in levels])
        ax.set_xlabel("concurrent clients (hey)")
        ax.grid(alpha=0.3, which="both")
    lat.set_yscale("log")
    lat.set_ylabel("latency (ms, log)")
    lat.set_title("One-image requests: latency")
    lat.legend(fontsize=7)
    rps.set_ylabel("requests / s")
    rps.set_title("Throughput")
    rps.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--model", default=f"models:/{registry.MODEL_NAME}@champion")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--concurrency", default="1,4,16,64,128")
    args = p.parse_args()
    if not shutil.which("hey"):
        raise SystemExit("bench.serve_latency needs `hey` on PATH (apt-get install hey)")

    pinned = ModelHolder(args.model)._resolve().uri  # the same version for every server
    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist"))
    image = data.load(data_dir).test.images[0].tolist()
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    load, rows = os.getloadavg(), []
    for name, (command, health, path, key) in servers(args.model, pinned).items():
        port = free_port()
        flag = ["--port", str(port)] if "mnist" in Path(command[0]).name else ["-p", str(port)]
        proc = start_server(
            [*command, *flag], f"http://127.0.0.1:{port}{health}", work / f"{len(rows)}.log", {}
        )
        try:
            body = work / f"{key}.json"
            body.write_text(json.dumps({key: [image]}))
            url = f"http://127.0.0.1:{port}{path}"
            httpx.post(
                url,
                content=body.read_bytes(),
                headers={"Content-Type": "application/json"},
                timeout=60,
            ).raise_for_status()
            hey(url, body, 2, 8)  # warm-up: every code path traced
            for concurrency in map(int, args.concurrency.split(",")):
                rows.append({"server": name, **hey(url, body, args.seconds, concurrency)})
                print(json.dumps(rows[-1]), flush=True)
                time.sleep(1)
        finally:
            stop_server(proc)

    meta = {
        "model": pinned,
        "seconds": args.seconds,
        "load_average_at_start": load,
        "cores": os.cpu_count(),
    }
    table = (
        "| server | clients | req/s | p50 ms | p90 ms | p99 ms | errors |\n"
        "|---|---|---|---|---|---|---|\n"
    ) + "".join(
        f"| {r['server']} | {r['concurrency']} | {r['requests_per_s']:,} | {r['p50_ms']} | "
        f"{r['p90_ms']} | {r['p99_ms']} | {r['errors']} |\n"
        for r in rows
    )
    table += (
        f"\n`hey -z {args.seconds:g}s`, one-image JSON requests, model {pinned}; {machine(load)}.\n"
    )
    save("serve_latency", {**meta, "results": rows}, table)
    plot(rows, RESULTS / "serve_latency.png")


if __name__ == "__main__":
    main()
