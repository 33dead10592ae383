"""The deployments and the loop, closed on real servers with no command typed between labels
and the new champion: `prefect server`, `mlflow server`, the project's prefect.yaml (schedules,
the retrain trigger), a process worker, the alert automations, `mnist serve` with its
prediction log in the SQL store. The first champion comes from a run of the `mnist-retrain`
deployment, taken by the worker.

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
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

from mnist.datastore import Store
from mnist.waiting import exited, wait_until
from tests.conftest import ROOT
from tests.servers import Webhook, free_port, start_server, stop_server
from tests.sources import mirror_writing

pytestmark = pytest.mark.slow  # real servers, two trainings: the full suite only

BIN = Path(sys.executable).parent
TOKEN = "labeller-token-for-the-loop-test"
WINDOW = 400


@dataclass
class Loop:
    api: str
    env: dict[str, str]
    serve: str
    receiver: Webhook
    store: Store
    first_run: str  # the deployment run that made the first champion


def _run(args: list[str], env: dict[str, str], timeout: float = 600) -> str:
    proc = subprocess.run(args, cwd=ROOT, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


def _first_champion(api: str, env: dict[str, str], work: Path) -> tuple[subprocess.Popen, str]:
    """The work pool, the worker, the alerts and the deployments of prefect.yaml; then a run of
    `mnist-retrain`, taken by the worker, makes the first champion. The worker, the alerts and
    the deployments are started at once: none needs the others. Returns the worker (it goes on
    taking runs) and the run's id."""
    prefect = str(BIN / "prefect")
    _run([prefect, "work-pool", "create", "mnist-process", "--type", "process"], env)
    with (work / "worker.log").open("w") as log:
        worker = subprocess.Popen(
            [prefect, "worker", "start", "--pool", "mnist-process"],
            cwd=ROOT,
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
    try:
        alerts = subprocess.Popen(
            [sys.executable, "-m", "app.stack", "automation"],
            cwd=ROOT,
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        _run([prefect, "--no-prompt", "deploy", "--all"], env)
        said = alerts.communicate(timeout=300)[0]
        assert alerts.returncode == 0, said[-3000:]
        config = {"model": "small", "epochs": 2, "train_limit": 4000, "test_limit": 1000}
        params = {"config": {**config, "experiment": "deployed"}, "gate": {"floor": 0.8}}
        run = [prefect, "deployment", "run", "mnist-retrain/mnist-retrain"]
        out = _run([*run, "--params", json.dumps(params)], env)
        first_run = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)

        def ended() -> bool:
            state = httpx.get(f"{api}/flow_runs/{first_run}").json()["state"]
            return state["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")

        wait_until(ended, 600, 2, exited(worker))
    except BaseException:
        stop_server(worker)
        raise
    return worker, first_run


@pytest.fixture(scope="module")
def receiver() -> Iterator[Webhook]:
    """Where the alerts go (MNIST_ALERT_URL)."""
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def loop(servers, mnist_path, receiver, tmp_path_factory) -> Iterator[Loop]:
    """Deployments and alerts on the server, a champion, a worker and a server answering."""
    (api, home), mlflow_server = servers
    work = tmp_path_factory.mktemp("loop")
    store_url = f"sqlite:///{work / 'mnist-data.db'}"
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MNIST_DATA_DIR": str(mnist_path),
        "MNIST_DATASTORE": store_url,
        "MNIST_ALERT_URL": f"{receiver.url}/hook",
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
    worker, first_run = _first_champion(api, env, work)
    try:
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
    except BaseException:
        stop_server(worker)
        raise
    yield Loop(api, env, f"http://127.0.0.1:{port}", receiver, Store(store_url), first_run)
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
    """The runs of `deployment` that an automation (the trigger) created."""
    found = httpx.post(
        f"{loop.api}/flow_runs/filter",
        json={"deployments": {"name": {"any_": [deployment]}}},
    ).json()
    return [r for r in found if (r.get("created_by") or {}).get("type") == "AUTOMATION"]


def _serving_version(loop: Loop) -> str:
    return httpx.get(f"{loop.serve}/model").json()["version"]


def test_the_loop_closes_from_drift_to_a_better_champion(loop, mnist_data):
    first = _serving_version(loop)
    # MNIST test traffic served to the champion trained on MNIST: ok in every window (here,
    # not in a test of its own, so that random order never runs it on the loop's challenger)
    for start in range(0, 2 * WINDOW, WINDOW):
        _predict(loop, mnist_data.test.images[start : start + WINDOW])
        report = _monitor(loop)
        assert report["verdict"] == "ok", report
        assert report["predictions"] == WINDOW and report["drift"] is False

    images, labels = mirror_writing(mnist_data, 0, 2 * WINDOW)
    seen, later = slice(0, WINDOW), slice(WINDOW, 2 * WINDOW)
    answers = _predict(loop, images[seen])  # serve -> log

    # strangers' labels: 300 wrong digits from 10 clients, each within its minute, start nothing
    wrong = (labels[seen] + 1) % 10
    for n in range(10):
        part = slice(n * 30, (n + 1) * 30)
        client = f"127.0.0.{n + 2}"
        _label(loop, images[seen][part], wrong[part], answers[part], None, client)
    pending = [b for b in loop.store.batches() if b.review == "pending"]
    assert sum(b.samples for b in pending) == 300
    time.sleep(15)  # longer than the server's event interval
    assert _flow_runs(loop) == [] and _serving_version(loop) == first
    snapshot = loop.store.snapshot()  # what a training run would take: none of them
    assert len(snapshot.train.labels) + len(snapshot.holdout.labels) == 0
    for batch in pending:
        loop.store.reject(batch.id)

    # a person's labels past the threshold: the trigger starts mnist-retrain on the worker
    _label(loop, images[seen][:250], labels[seen][:250], answers[:250], TOKEN)

    # meanwhile: monitor -> drift -> alert, and the live accuracy the labels tell
    drifted = _monitor(loop)
    assert drifted["verdict"] == "drift" and drifted["drift"] is True, drifted
    before = drifted["live_accuracy"]
    assert before is not None and before < 0.7, before
    loop.receiver.wait(lambda body: "drift" in body.get("subject", ""), 60)

    # retrain -> gate -> serve
    wait_until(lambda: _flow_runs(loop), 90, 2)
    wait_until(lambda: _serving_version(loop) != first, 600, 5)

    def ended() -> dict | None:  # the champion moves before the run writes its report
        (run,) = _flow_runs(loop)  # one run, however many events
        return run if run["state"]["type"] not in ("RUNNING", "PENDING", "SCHEDULED") else None

    run = wait_until(ended, 120, 2)
    assert run["state"]["type"] == "COMPLETED", run["state"]

    # the next window, on the new champion: better
    answers = _predict(loop, images[later])
    _label(loop, images[later][:100], labels[later][:100], answers[:100], TOKEN)
    after = _monitor(loop)["live_accuracy"]
    assert after > before + 0.2, (before, after)
    print(f"\nlive accuracy on mirror writing: {before:.3f} before, {after:.3f} after")


# The deployments of prefect.yaml, and the run that made the first champion


def test_the_deployments_have_their_schedules_and_the_trigger(loop):
    retrain = httpx.get(f"{loop.api}/deployments/name/mnist-retrain/mnist-retrain").json()
    assert retrain["work_pool_name"] == "mnist-process"
    assert [s["schedule"]["cron"] for s in retrain["schedules"]] == ["0 3 * * 1"]
    assert retrain["parameters"] == {
        "config": {"profile": "default", "init_from": "models:/mnist-cnn@champion"}
    }
    steps = retrain["pull_steps"][0]["prefect.deployments.steps.set_working_directory"]
    assert steps["directory"] == str(ROOT)
    monitor = httpx.get(f"{loop.api}/deployments/name/mnist-monitor/mnist-monitor").json()
    assert [s["schedule"]["cron"] for s in monitor["schedules"]] == ["0 * * * *"]
    assert monitor["parameters"] == {"settings": {"since": "1h"}}
    automations = httpx.post(f"{loop.api}/automations/filter", json={}).json()
    [trigger] = [a for a in automations if a["name"] == "mnist: retrain when new labels are due"]
    assert trigger["trigger"]["match"]["mnist.retrain.due"] == "true"
    assert trigger["actions"][0]["deployment_id"] == retrain["id"]


def test_the_deployment_run_completes_with_its_artifacts(loop):
    run = httpx.get(f"{loop.api}/flow_runs/{loop.first_run}").json()
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == "retrain-small-e2-s42"
    assert {"mnist", "retrain"} <= set(run["tags"])
    artifacts = httpx.post(
        f"{loop.api}/artifacts/filter", json={"flow_runs": {"id": {"any_": [loop.first_run]}}}
    ).json()
    keys = {a["key"] for a in artifacts}
    assert {"retrain-decision", "per-class-metrics"} <= keys
    decision = next(a for a in artifacts if a["key"] == "retrain-decision")
    assert "promoted" in decision["data"] and "no champion yet" in decision["data"]
    logs = httpx.post(
        f"{loop.api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [loop.first_run]}}}
    )
    assert any("epoch 2/2" in entry["message"] for entry in logs.json())


def test_the_gate_tells_its_decision_as_an_event(loop):
    def decided() -> list[dict]:
        found = httpx.post(
            f"{loop.api}/events/filter",
            json={"filter": {"event": {"name": ["mnist.gate.decided"]}}},
        ).json()["events"]
        related = f"prefect.flow-run.{loop.first_run}"
        return [e for e in found if related in {r["prefect.resource.id"] for r in e["related"]}]

    [event] = wait_until(decided, 10, 0.5)  # the server files events a moment after
    assert event["resource"]["prefect.resource.id"] == "mnist.gate.mnist-cnn"
    assert event["resource"]["mnist.gate.alert"] == "false"
    assert event["payload"]["decision"] == "promoted" and event["payload"]["streak"] == 0


def test_the_registry_on_the_server_follows_the_gate(loop):
    client = MlflowClient(tracking_uri=loop.env["MLFLOW_TRACKING_URI"])
    first = client.get_model_version("mnist-cnn", "1")
    assert first.tags["decision"] == "promoted"
    run = client.get_run(str(first.run_id))
    assert run.data.tags["gate.decision"] == "promoted"
    assert run.data.metrics["gate.challenger_test_accuracy"] >= 0.8
    champion = client.get_model_version_by_alias("mnist-cnn", "champion")
    assert champion.tags["decision"] == "promoted"  # v1, or the loop's challenger


def test_predict_with_the_champion_from_another_directory(loop, mnist_data, tmp_path):
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(mnist_data.test.images[i]).save(paths[-1])
    command = [str(BIN / "mnist"), "predict", "--model", "models:/mnist-cnn@champion"]
    proc = subprocess.run(
        [*command, *map(str, paths)], cwd=tmp_path, env=loop.env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stderr
    predicted = [int(line.split()[1]) for line in proc.stdout.splitlines()[1:]]
    assert sum(p == t for p, t in zip(predicted, mnist_data.test.labels[:5], strict=True)) >= 4


def test_mnist_train_against_the_server_reports_every_task_run(loop):
    """`mnist train` against a real Prefect server ends without the interpreter's teardown
    (`app.cli.run`): the flow run and every task run still end COMPLETED on the server."""
    options = ["--model", "small", "--epochs", "1", "--train-limit", "2000"]
    options += ["--test-limit", "500", "--experiment", "cli", "--no-register"]
    out = _run([str(BIN / "mnist"), "train", *options], loop.env)
    assert "test accuracy:" in out
    flows = httpx.post(
        f"{loop.api}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["train"]}}}
    ).json()
    assert len(flows) == 1 and flows[0]["state"]["type"] == "COMPLETED", flows

    def every_task_done() -> dict | None:
        tasks = httpx.post(
            f"{loop.api}/task_runs/filter",
            json={"flow_runs": {"id": {"any_": [flows[0]["id"]]}}},
        ).json()
        states = {t["name"]: t["state"]["type"] if t["state"] else None for t in tasks}
        return states if len(tasks) >= 6 and set(states.values()) == {"COMPLETED"} else None

    wait_until(every_task_done, 10, 0.5)  # the server files events a moment after
