"""The monitor: predictions until drift is flagged after the traffic changes source (MNIST
test digits, then mirror-written ones, `tests.sources`), false alarms on MNIST test traffic,
and the whole `mnist monitor` command on a window of 10,000 predictions in a log of 1,000,000.

    python -m bench.monitor [--rows 1000000] [--window 10000] [--postgres]

The log is filled by writing rows directly (`PredictionLog.write`): the champion's answers
on MNIST test digits (or mirror-written ones), each image kept for a 10% random sample and
for every answer under 0.9 confidence, as `mnist serve` keeps them. Uses the tracking store of
MLFLOW_TRACKING_URI (or ./mlflow.db), which must have a champion, and MNIST_DATA_DIR (else
../shared/data/mnist). Writes bench/results/monitor.{json,md}.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

# isort: off
import mnist.env  # noqa: F401  (first: env defaults)

# isort: on
import numpy as np

from bench import machine, save
from mnist import data, drift, monitoring, registry, tracking
from mnist.datastore import Logged, PredictionLog, Store, new_ids
from mnist.evaluation import predict_proba
from mnist.settings import MonitorSettings
from tests.sources import mirror_writing

BIN = Path(sys.executable).parent
SHARE, UNSURE = 0.1, 0.9  # `mnist serve`'s defaults: --log-images, --log-confidence


class Traffic:
    """The champion's answers on a set of images, served as log rows in any order."""

    def __init__(self, model, images: np.ndarray, version: str):
        p = predict_proba(model, images.astype(np.float32))
        order = np.argsort(p, axis=1)
        self.images, self.version = images, version
        self.digits, self.runner_up = order[:, -1], order[:, -2]
        self.confidence = np.take_along_axis(p, order[:, -1:], 1)[:, 0]
        self.runner_up_p = np.take_along_axis(p, order[:, -2:-1], 1)[:, 0]

    def rows(self, index: np.ndarray, at: list[datetime], rng: np.random.Generator) -> list[Logged]:
        sampled = rng.random(len(index)) < SHARE
        out = []
        for i, when, kept in zip(index.tolist(), at, sampled.tolist(), strict=True):
            (pid,) = new_ids(1, when)
            unsure = self.confidence[i] < UNSURE
            image = self.images[i].tobytes() if kept or unsure else None
            out.append(
                Logged(
                    pid,
                    when,
                    self.version,
                    int(self.digits[i]),
                    float(self.confidence[i]),
                    int(self.runner_up[i]),
                    float(self.runner_up_p[i]),
                    image,
                    kept,
                )
            )
        return out


def _times(n: int, end: datetime, span: timedelta) -> list[datetime]:
    step = span / max(n, 1)
    return [end - span + step * (i + 1) for i in range(n)]


def _judge(log: PredictionLog, last: int, ref, model, settings, champ) -> monitoring.Report:
    window = log.window(last=last)
    return monitoring.judge(window, ref, model, settings, (champ.name, champ.version))


def verdicts(store: Store, test: Traffic, mirror: Traffic, ref, model, champ) -> dict:
    """False alarms in 20 windows of 500 MNIST test predictions; then mirror writing, the
    window of the last 500 judged every 25 predictions until it says drift."""
    settings, log, rng = MonitorSettings(), PredictionLog(store), np.random.default_rng(0)
    order = np.random.default_rng(1).permutation(len(test.images))
    now = datetime.now(UTC) - timedelta(hours=1)
    alarms, worst = [], {t: 0.0 for t in drift.TESTS}
    for w in range(20):
        index = order[w * 500 : (w + 1) * 500]
        log.write(test.rows(index, _times(500, now, timedelta(seconds=1)), rng))
        now += timedelta(seconds=2)
        report = _judge(log, 500, ref, model, settings, champ)
        alarms.append(report.verdict != monitoring.OK)
        worst = {t: max(worst[t], report.scores[t] or 0.0) for t in drift.TESTS}
    flagged, switched = None, 0
    while flagged is None and switched < 1000:
        index = np.arange(switched, switched + 25)
        log.write(mirror.rows(index, _times(25, now, timedelta(milliseconds=100)), rng))
        now += timedelta(milliseconds=200)
        switched += 25
        report = _judge(log, 500, ref, model, settings, champ)
        if report.verdict == monitoring.DRIFT:
            flagged = (switched, report.scores)
    return {
        "false_alarms": int(sum(alarms)),
        "windows": len(alarms),
        "worst_ok_scores": worst,
        "settings": settings.model_dump(),
        "predictions_until_drift": flagged[0] if flagged else None,
        "scores_when_flagged": flagged[1] if flagged else None,
    }


def fill(store: Store, test: Traffic, rows: int, window: int) -> float:
    """`rows` predictions over 30 days, the last `window` of them in the last hour; seconds."""
    log, rng = PredictionLog(store), np.random.default_rng(2)
    end = datetime.now(UTC)
    old, start = rows - window, time.perf_counter()
    for first in range(0, old, 50_000):
        n = min(50_000, old - first)
        at = _times(
            n,
            end - timedelta(hours=1) - timedelta(days=30) * (1 - (first + n) / old),
            timedelta(days=30) * n / old,
        )
        log.write(test.rows(rng.integers(0, len(test.images), n), at, rng))
    recent = _times(window, end - timedelta(minutes=5), timedelta(minutes=30))
    log.write(test.rows(rng.integers(0, len(test.images), window), recent, rng))
    return time.perf_counter() - start


def command(url: str, env: dict[str, str]) -> tuple[float, dict]:
    """`mnist monitor --since 1h --json`: whole-command seconds and its report."""
    import json

    start = time.perf_counter()
    proc = subprocess.run(
        [str(BIN / "mnist"), "monitor", "--since", "1h", "--json", "--datastore", url],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"mnist monitor failed: {proc.stderr[-2000:]}")
    for line in proc.stderr.splitlines():  # when each task ended: where the time goes
        if "Finished in state" in line or "Beginning flow run" in line:
            print("   ", line[:100])
    return seconds, json.loads(proc.stdout[proc.stdout.index("{") :])


def main() -> None:
    parser = argparse.ArgumentParser(description="The monitor: drift found, false alarms, speed.")
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--window", type=int, default=10_000)
    parser.add_argument("--postgres", action="store_true", help="PostgreSQL too")
    args = parser.parse_args()
    load = os.getloadavg()
    os.environ.setdefault(
        "MNIST_DATA_DIR", str(Path(__file__).resolve().parents[2] / "shared/data/mnist")
    )
    mnist = data.load(None)
    champ = registry.champion()
    if champ is None:
        raise SystemExit("no champion in the tracking store: mnist retrain --profile fast first")
    model = tracking.load_model(champ.uri)
    mirror_images, _ = mirror_writing(mnist, 0, 1000)
    test, mirror = (
        Traffic(model, mnist.test.images, champ.version),
        Traffic(model, mirror_images, champ.version),
    )
    params = tracking.call(tracking.client().get_run, champ.run_id).data.params
    ref = monitoring.build_reference(model, mnist, params, MonitorSettings().reference_size)
    report: dict = {"champion": f"{champ.name} v{champ.version}", "machine": machine(load)}
    with tempfile.TemporaryDirectory(prefix="bench-monitor-") as tmp:
        report |= verdicts(Store(f"sqlite:///{tmp}/verdicts.db"), test, mirror, ref, model, champ)
        alarms, after = report["false_alarms"], report["predictions_until_drift"]
        print(f"false alarms {alarms}/20; drift after {after} mirror predictions", flush=True)
        urls = {"sqlite": f"sqlite:///{tmp}/log.db"}
        server = None
        if args.postgres:
            from tests.servers import Postgres

            server = Postgres()
            urls["postgresql"] = server.url("monitor_bench")
        env = {**os.environ}
        for kind, url in urls.items():
            filled = fill(Store(url), test, args.rows, args.window)
            size = MonitorSettings().reference_size
            cache = tracking.state_dir() / "monitor" / f"{champ.name}-v{champ.version}-{size}.npz"
            cache.unlink(missing_ok=True)  # the first command builds the reference
            cold, _ = command(url, env)
            warm, second = command(url, env)
            report[kind] = {
                "rows": args.rows,
                "window": second["predictions"],
                "fill_seconds": round(filled, 1),
                "first_seconds": round(cold, 1),
                "seconds": round(warm, 1),
                "verdict": second["verdict"],
            }
            print(f"{kind}: {report[kind]}", flush=True)
        if server is not None:
            server.close()
    save("monitor", report, table(report))


def table(r: dict) -> str:
    lines = [
        "# The monitor (`python -m bench.monitor`)",
        "",
        f"{r['champion']}; {r['machine']}.",
        "",
        "| measure | aim | measured |",
        "| --- | --- | --- |",
        "| false alarms, MNIST test traffic, windows of 500 | 0 in 20 "
        f"| {r['false_alarms']} in {r['windows']} |",
        "| mirror-written predictions until drift (window: last 500, judged every 25) | <= 500 "
        f"| {r['predictions_until_drift']} |",
    ]
    for kind in ("sqlite", "postgresql"):
        if kind in r:
            m = r[kind]
            lines.append(
                f"| `mnist monitor --since 1h`, {m['window']:,} in a log of {m['rows']:,} ({kind}) "
                f"| <= 30 s | {m['seconds']} s ({m['first_seconds']} s building the reference) |"
            )
    worst = ", ".join(f"{k} {v:.3f}" for k, v in r["worst_ok_scores"].items())
    lines += ["", f"Highest scores in the 20 MNIST windows: {worst}."]
    if r["scores_when_flagged"]:
        flagged = ", ".join(
            f"{k} {v:.3f}" for k, v in r["scores_when_flagged"].items() if v is not None
        )
        lines.append(f"Scores when drift was flagged: {flagged}.")
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    main()
