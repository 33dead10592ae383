"""The loop, closed on real servers with no command typed between labels and the new champion:
`prefect server`, `mlflow server`, the project's prefect.yaml (the retrain trigger), a process
worker, the alert automations, `mnist serve` with its prediction log in the SQL store.

A champion trained on MNIST serves mirror-written digits (`tests.sources`), a handwriting it
has never seen: the monitor flags drift and the alert reaches a local receiver; anonymous
wrong labels start nothing; trusted labels past the threshold start `mnist-retrain` on the
worker through the trigger; the new champion passes the gate, the running server picks it
up, and the next window's live accuracy is higher. MNIST test traffic is `ok` in every window.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import httpx
import numpy as np
import pytest

from mnist.datastore import Store
from mnist.waiting import wait_until
from tests.conftest import ROOT
from tests.servers import free_port, start_server, stop_server
from tests.sources import mirror_writing

pytestmark = pytest.mark.slow  # real servers, two trainings: the full suite only

BIN = Path(sys.executable).parent
TOKEN = "labeller-token-for-the-loop-test"
WINDOW = 400


@dataclass
class Receiver:
    """A local HTTP endpoint that keeps what alerts post to it."""

    url: str
    bodies: list[str] = field(default_factory=list)


@dataclass
class Loop:
    api: str
    env: dict[str, str]
    serve: str
    receiver: Receiver
    store: Store


def _run(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def receiver() -> Iterator[Receiver]:
    port = free_port()
    got = Receiver(f"http://127.0.0.1:{port}/alerts")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self):
            length = int(self.headers.get("content-length", 0))
            got.bodies.append(self.rfile.read(length).decode(errors="replace"))
            self.send_response(200)
            self.end_headers()

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield got
    server.shutdown()


@pytest.fixture(scope="module")
def loop(prefect_server, mlflow_server, mnist_path, receiver, tmp_path_factory) -> Iterator[Loop]:
    """Deployments and alerts on the server, a champion, a worker and a server answering."""
    api, home = prefect_server
    work = tmp_path_factory.mktemp("loop")
    store_url = f"sqlite:///{work / 'mnist-data.db'}"
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MNIST_DATA_DIR": str(mnist_path),
        "MNIST_DATASTORE": store_url,
        "MNIST_ALERT_URL": receiver.url,
        # the operator's choice of a quick recipe and a low floor, for the worker's runs
        "MNIST_MODEL": "small",
        "MNIST_EPOCHS": "2",
        "MNIST_FINETUNE_EPOCHS": "2",
        "MNIST_TRAIN_LIMIT": "4000",
        "MNIST_TEST_LIMIT": "1000",
        "MNIST_GATE_FLOOR": "0.8",
        "PREFECT_WORKER_QUERY_SECONDS": "2",
    }
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    prefect = str(BIN / "prefect")
    _run([prefect, "work-pool", "create", "mnist-process", "--type", "process"], env)
    _run([prefect, "--no-prompt", "deploy", "--all"], env)
    _run([sys.executable, "-m", "app.stack", "automation"], env)
    _run([str(BIN / "mnist"), "retrain"], env)  # the first champion, on MNIST alone
    with (work / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "mnist-process"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    port = free_port()
    serve_env = {**env, "MNIST_SERVE_FEEDBACK_TOKEN": TOKEN}
    server = start_server(
        [
            str(BIN / "mnist"),
            "serve",
            "--port",
            str(port),
            "--poll-seconds",
            "2",
            "--log-images",
            "1",
        ],
        f"http://127.0.0.1:{port}/healthz",
        work / "serve.log",
        serve_env,
    )
    yield Loop(api, env, f"http://127.0.0.1:{port}", receiver, Store(store_url))
    stop_server(server)
    stop_server(worker)


def _predict(loop: Loop, images: np.ndarray) -> list[dict]:
    answers = []
    for start in range(0, len(images), 100):
        body = {"pixels": images[start : start + 100].tolist()}
        response = httpx.post(f"{loop.serve}/predict", json=body, timeout=60)
        assert response.status_code == 200, response.text
        answers += response.json()["predictions"]
    return answers


def _label(loop: Loop, images, labels, answers, token: str | None, client: str = "127.0.0.1"):
    headers = {"Authorization": f"Bearer {token}"} if token else {}
    transport = httpx.HTTPTransport(local_address=client)
    with httpx.Client(transport=transport, headers=headers, timeout=30) as http:
        for image, label, answer in zip(images, labels, answers, strict=True):
            body = {"pixels": image.tolist(), "label": int(label), "prediction": answer["id"]}
            response = http.post(f"{loop.serve}/feedback", json=body)
            assert response.status_code == 201, response.text


def _monitor(loop: Loop, last: int = WINDOW) -> dict:
    out = _run([str(BIN / "mnist"), "monitor", "--last", str(last), "--json"], loop.env)
    return json.loads(out[out.index("{") :])


def _flow_runs(loop: Loop, deployment: str = "mnist-retrain") -> list[dict]:
    found = httpx.post(
        f"{loop.api}/flow_runs/filter",
        json={"deployments": {"name": {"any_": [deployment]}}},
    ).json()
    return [r for r in found if not r["auto_scheduled"]]  # the weekly schedule's runs aside


def _serving_version(loop: Loop) -> str:
    return httpx.get(f"{loop.serve}/model").json()["version"]


def test_mnist_test_traffic_is_ok_in_every_window(loop, mnist_data):
    for start in range(0, 3 * WINDOW, WINDOW):
        _predict(loop, mnist_data.test.images[start : start + WINDOW])
        report = _monitor(loop)
        assert report["verdict"] == "ok", report
        assert report["predictions"] == WINDOW and report["drift"] is False


def test_the_loop_closes_from_drift_to_a_better_champion(loop, mnist_data):
    first = _serving_version(loop)
    images, labels = mirror_writing(mnist_data, 0, 2 * WINDOW)
    seen, later = slice(0, WINDOW), slice(WINDOW, 2 * WINDOW)

    # serve -> log -> monitor -> alert
    answers = _predict(loop, images[seen])
    drifted = _monitor(loop)
    assert drifted["verdict"] == "drift" and drifted["drift"] is True, drifted
    wait_until(lambda: any("drift" in b for b in loop.receiver.bodies), 60, 1)

    # strangers' labels: wrong digits from several clients start nothing
    wrong = (labels[seen] + 1) % 10
    for n, client in enumerate(("127.0.0.2", "127.0.0.3", "127.0.0.4", "127.0.0.5")):
        part = slice(n * 25, (n + 1) * 25)
        _label(loop, images[seen][part], wrong[part], answers[part], None, client)
    pending = [b for b in loop.store.batches() if b.review == "pending"]
    assert sum(b.samples for b in pending) == 100
    time.sleep(15)  # longer than the server's event interval
    assert _flow_runs(loop) == [] and _serving_version(loop) == first
    for batch in pending:
        loop.store.reject(batch.id)

    # label -> retrain (the trigger, on the worker) -> gate -> serve
    _label(loop, images[seen][:250], labels[seen][:250], answers[:250], TOKEN)
    before = _monitor(loop)["live_accuracy"]
    assert before is not None and before < 0.7, before
    wait_until(lambda: _flow_runs(loop), 90, 2)
    wait_until(lambda: _serving_version(loop) != first, 600, 5)
    (run,) = _flow_runs(loop)  # one run, however many events
    assert run["state"]["type"] == "COMPLETED", run["state"]

    # the next window, on the new champion: better
    answers = _predict(loop, images[later])
    _label(loop, images[later][:100], labels[later][:100], answers[:100], TOKEN)
    after = _monitor(loop)["live_accuracy"]
    assert after > before + 0.2, (before, after)
