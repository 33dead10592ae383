"""Serving under load: one-image JSON requests from `hey` (a compiled load generator) at
several concurrencies, against `mnist serve` (the version's ONNX copy in ONNX Runtime; Keras
with `--runtime keras`; micro-batching off with `--batch-images 1`), `mlflow models serve`, all
serving the same model version, and the ceiling: a bare FastAPI endpoint that only parses the
body (`bench.serve_ceiling`). Each server's resident memory (RSS, its process tree) is read
from /proc after its load. Then the prediction log's cost: `mnist serve` with the log on
against `--no-prediction-log` at `--log-clients` clients, alternating (on, off, on, off, ...)
for `--log-rounds` rounds, and the log's bytes per prediction on SQLite, with and without the
image.

    python -m bench.serve_latency [--model REF (default: the champion)] [--seconds 8]
                                  [--concurrency 1,4,16,64,128] [--log-rounds 5]
                                  [--servers NAME,...]
                                  [--log-clients 64] [--log-only]

Uses the tracking store of MLFLOW_TRACKING_URI (or ./mlflow.db) and the first MNIST test
image (MNIST_DATA_DIR, else ../shared/data/mnist). `hey` comes from Debian's package
(`apt-get install hey`). Load generator and server share this machine's cores: compare rows
measured in one run. Writes bench/results/serve_latency.{json,md,png} (not with
`--log-only`) and bench/results/serve_log.{json,md}. `--servers` picks some of them by name.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

# isort: off
import mnist.env  # noqa: F401  (first: env defaults)

# isort: on
import httpx
import numpy as np

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
        "requests_per_s": round(float(re.findall(r"Requests/sec:\s+([\d.]+)", out)[0]), 1),
        **{f"p{p}_ms": round(found[p], 2) for p in PERCENTILES},
        "ok": int(statuses.pop("200", 0)),
        "errors": sum(map(int, statuses.values()))  # other statuses, and no answer at all
        + sum(int(n) for n in re.findall(r"\[(\d+)\]", failures)),
    }


def rss_mb(pid: int) -> float:
    """Resident memory (VmRSS) of process `pid` and its descendants, in MiB."""
    total, todo = 0, [pid]
    while todo:
        here = todo.pop()
        proc = Path(f"/proc/{here}")
        try:
            status = (proc / "status").read_text()
            total += int(re.findall(r"VmRSS:\s+(\d+) kB", status)[0])
            for task in (proc / "task").iterdir():
                todo += [int(c) for c in (task / "children").read_text().split()]
        except (OSError, IndexError):  # gone, or a kernel thread without VmRSS
            continue
    return round(total / 1024, 1)


CEILING = "bare FastAPI (ceiling)"
"""The server that only parses the body: what this machine's HTTP stack can do at best."""


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
        "mnist serve --runtime keras": (
            [*mnist, "--runtime", "keras"],
            "/healthz",
            "/predict",
            "pixels",
        ),
        "mnist serve --batch-images 1": (
            [*mnist, "--batch-images", "1"],
            "/healthz",
            "/predict",
            "pixels",
        ),
        "mlflow models serve": (mlflow, "/ping", "/invocations", "inputs"),
        CEILING: (
            [sys.executable, "-m", "bench.serve_ceiling"],
            "/healthz",
            "/predict",
            "pixels",
        ),
    }


def _start(command: list[str], health: str, work: Path, name: str) -> tuple[object, str]:
    """A server of `command` on a free port, once `health` answers: (process, base URL)."""
    port = free_port()
    flag = ["--port", str(port)] if "mnist" in Path(command[0]).name else ["-p", str(port)]
    base = f"http://127.0.0.1:{port}"
    return start_server([*command, *flag], base + health, work / f"{name}.log", {}), base


def log_cost(model: str, image: list, work: Path, seconds: float, clients: int, rounds: int):
    """Throughput and latency of `mnist serve` with the prediction log on and off, both servers
    up at once, loaded in turns (on, off, on, off, ...): every run's figures and the medians."""
    mnist = [str(BIN / "mnist"), "serve", "--model", model, "--poll-seconds", "0", "--no-feedback"]
    store = f"sqlite:///{work / 'log.db'}"
    kinds = {
        "on": [*mnist, "--datastore", store],
        "off": [*mnist, "--no-prediction-log"],
    }
    body = work / "pixels.json"
    body.write_text(json.dumps({"pixels": [image]}))
    started = {
        kind: _start(command, "/healthz", work, f"log-{kind}") for kind, command in kinds.items()
    }
    runs: dict[str, list[dict]] = {"on": [], "off": []}
    try:
        for _, base in started.values():
            hey(f"{base}/predict", body, 2, 8)  # warm-up: every code path traced
        for _ in range(rounds):
            for kind, (_, base) in started.items():
                runs[kind].append(hey(f"{base}/predict", body, seconds, clients))
                print(json.dumps({"log": kind, **runs[kind][-1]}), flush=True)
                time.sleep(1)
        time.sleep(1.5)  # the writer's last batch
        health = httpx.get(f"{started['on'][1]}/healthz").json()["prediction_log"]
    finally:
        for proc, _ in started.values():
            stop_server(proc)
    medians = {
        kind: {
            key: round(statistics.median(r[key] for r in mine), 2)
            for key in ("requests_per_s", "p50_ms", "p90_ms", "p99_ms")
        }
        | {"errors": sum(r["errors"] for r in mine)}
        for kind, mine in runs.items()
    }
    ratio = medians["on"]["requests_per_s"] / medians["off"]["requests_per_s"]
    return {"runs": runs, "medians": medians, "ratio": round(ratio, 3), "log": health}


def log_bytes(images: np.ndarray, rows: int, work: Path) -> dict[str, float]:
    """Bytes per logged prediction in a SQLite log (file size / rows) after `rows` predictions
    written through the writer, without any image and with every image."""
    from mnist.datastore import PredictionLog, Store, new_ids
    from mnist.prediction_log import LogWriter, Sampling

    out = {}
    rng = np.random.default_rng(0)
    p = rng.dirichlet(np.full(10, 0.05), rows).astype(np.float32)
    for name, share in (("without_image", 0.0), ("with_image", 1.0)):
        path = work / f"bytes-{name}.db"
        url = f"sqlite:///{path}"
        sink = PredictionLog(Store(url))
        writer = LogWriter(lambda sink=sink: sink, 30, Sampling(share, 0.0), max_rows=rows)
        writer.start()
        for start in range(0, rows, 1000):
            part = slice(start, min(start + 1000, rows))
            n = part.stop - part.start
            writer.record(
                new_ids(n), images[np.arange(part.start, part.stop) % len(images)], p[part], "1"
            )
            while writer.stats.queued > 5000:
                time.sleep(0.01)
        writer.close(timeout=60)
        assert writer.stats.written == rows, writer.stats
        sink.store.engine.dispose()
        with sqlite3.connect(path) as db:
            db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
        size = path.stat().st_size + sum(f.stat().st_size for f in work.glob(f"{path.name}-*"))
        out[name] = round(size / rows, 1)
    return out


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


def latency(args: argparse.Namespace, pinned: str, image: list, work: Path) -> None:
    """The servers at each concurrency: bench/results/serve_latency.{json,md,png}."""
    load, rows, memory, runtimes = os.getloadavg(), [], {}, {}
    chosen = servers(args.model, pinned)
    if args.servers:
        chosen = {k: v for k, v in chosen.items() if k in args.servers.split(",")}
    for name, (command, health, path, key) in chosen.items():
        proc, base = _start(command, health, work, str(len(rows)))
        try:
            if path == "/predict" and name != CEILING:
                runtimes[name] = httpx.get(base + health).json()["runtime"]
            body = work / f"{key}.json"
            body.write_text(json.dumps({key: [image]}))
            url = base + path
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
            memory[name] = rss_mb(proc.pid)  # type: ignore[attr-defined]
            print(json.dumps({"server": name, "rss_mb": memory[name]}), flush=True)
        finally:
            stop_server(proc)

    meta = {
        "model": pinned,
        "seconds": args.seconds,
        "load_average_at_start": load,
        "load_average_at_end": os.getloadavg(),
        "cores": os.cpu_count(),
        "runtimes": runtimes,
        "rss_mb": memory,
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
        f"\n`hey -z {args.seconds:g}s`, one-image JSON requests, model {pinned}; {machine(load)}"
        f", {', '.join(f'{v:.2f}' for v in meta['load_average_at_end'])} at the end.\n\n"
        "| server | runtime | resident memory after its load (MiB) |\n|---|---|---|\n"
    ) + "".join(f"| {n} | {runtimes.get(n, '-')} | {m:,} |\n" for n, m in memory.items())
    save("serve_latency", {**meta, "results": rows}, table)
    plot(rows, RESULTS / "serve_latency.png")


def prediction_log(args: argparse.Namespace, pinned: str, images: np.ndarray, work: Path) -> None:
    """The log on against off, and its bytes: bench/results/serve_log.{json,md}."""
    load = os.getloadavg()
    cost = log_cost(
        pinned, images[0].tolist(), work, args.seconds, args.log_clients, args.log_rounds
    )
    sizes = log_bytes(images, args.log_bytes_rows, work)
    on, off = cost["medians"]["on"], cost["medians"]["off"]
    table = (
        "| prediction log | req/s | p50 ms | p90 ms | p99 ms | errors |\n"
        "|---|---|---|---|---|---|\n"
    ) + "".join(
        f"| {kind} | {m['requests_per_s']:,} | {m['p50_ms']} | {m['p90_ms']} | {m['p99_ms']} | "
        f"{m['errors']} |\n"
        for kind, m in (("on", on), ("off", off))
    )
    log = cost["log"]
    table += (
        f"\nWith the log on: **{cost['ratio']:.2f}x** the requests per second of off (medians "
        f"of {args.log_rounds} runs each, alternating on and off, `hey -z {args.seconds:g}s "
        f"-c {args.log_clients}`, one-image JSON requests, model {pinned}); the log wrote "
        f"{log['written']:,} predictions and dropped {log['dropped']:,}; {machine(load)}.\n\n"
        f"Bytes per logged prediction in SQLite (file size / rows, {args.log_bytes_rows:,} "
        f"rows written through the writer, indexes included): {sizes['without_image']:,} "
        f"without its image, {sizes['with_image']:,} with it.\n"
    )
    report = {
        "model": pinned,
        "seconds": args.seconds,
        "clients": args.log_clients,
        "rounds": args.log_rounds,
        "load_average_at_start": load,
        "cores": os.cpu_count(),
        **cost,
        "bytes_per_prediction": sizes,
        "bytes_rows": args.log_bytes_rows,
    }
    save("serve_log", report, table)


def main() -> None:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--model", default=f"models:/{registry.MODEL_NAME}@champion")
    p.add_argument("--seconds", type=float, default=8)
    p.add_argument("--concurrency", default="1,4,16,64,128")
    p.add_argument("--log-rounds", type=int, default=5, help="runs of each, log on and off")
    p.add_argument("--log-clients", type=int, default=64)
    p.add_argument("--log-bytes-rows", type=int, default=100_000)
    p.add_argument("--log-only", action="store_true", help="only the prediction log's cost")
    p.add_argument("--servers", default="", help="comma-separated names: only these servers")
    args = p.parse_args()
    if not shutil.which("hey"):
        raise SystemExit("bench.serve_latency needs `hey` on PATH (apt-get install hey)")

    pinned = ModelHolder(args.model)._resolve().uri  # the same version for every server
    data_dir = Path(os.environ.get("MNIST_DATA_DIR", "../shared/data/mnist"))
    images = data.load(data_dir).test.images
    work = Path(tempfile.mkdtemp(prefix="serve-bench-"))
    if not args.log_only:
        latency(args, pinned, images[0].tolist(), work)
    prediction_log(args, pinned, images, work)


if __name__ == "__main__":
    main()
