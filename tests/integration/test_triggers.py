"""Events, the retrain trigger and the alerts on a real `prefect server`: the deployments of
prefect.yaml, label events from `app.events` against a real store and MLflow registry, and the
alert automations posting to a receiver on 127.0.0.1 (no worker: the runs stay scheduled)."""

from __future__ import annotations

import itertools
import os
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import numpy as np
import pytest

from app import events
from flows import automations
from mnist.datastore import Store
from mnist.event_names import RETRAIN_DUE
from tests.conftest import ROOT, tracking_store
from tests.servers import Webhook

pytestmark = pytest.mark.slow  # a real Prefect server: the full suite only


def _wait(what: Callable[[], Any], timeout: float = 30) -> Any:
    deadline = time.monotonic() + timeout
    while not (found := what()):
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.05)
    return found


@pytest.fixture(scope="module")
def server(prefect_server, tmp_path_factory) -> Iterator[str]:
    """The Prefect server with the work pool and the retrain and train deployments of
    prefect.yaml (with the label trigger), and this process pointed at it."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    api, home = prefect_server
    env = {**os.environ, "PREFECT_API_URL": api, "PREFECT_HOME": str(home)}
    prefect = str(Path(sys.executable).parent / "prefect")
    for args in (
        ["work-pool", "create", "mnist-process", "--type", "process"],
        ["--no-prompt", "deploy", "--name", "mnist-retrain", "--name", "mnist-train"],
    ):
        out = subprocess.run([prefect, *args], cwd=ROOT, env=env, capture_output=True, text=True)
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    with (
        pytest.MonkeyPatch.context() as patch,
        temporary_settings({PREFECT_API_URL: api}),
        tracking_store(tmp_path_factory.mktemp("triggers-mlflow")),
    ):
        patch.setenv("PREFECT_API_URL", api)
        for name in ("PREFECT_API_AUTH_STRING", "PREFECT_API_KEY", "MNIST_REGISTERED_MODEL"):
            patch.delenv(name, raising=False)
        yield api


@pytest.fixture(scope="module")
def receiver(server) -> Iterator[Webhook]:
    """A webhook receiving the alerts: MNIST_ALERT_URL of the automations."""
    found = Webhook()
    made = automations.ensure_automations(f"{found.url}/hook")
    assert set(made.values()) == {"created"} and len(made) == 4
    again = automations.ensure_automations(f"{found.url}/hook")
    assert set(again.values()) == {"already there"}
    yield found
    found.close()


def _triggered(api: str) -> list[dict]:
    runs = httpx.post(
        f"{api}/flow_runs/filter",
        json={"deployments": {"name": {"any_": ["mnist-retrain"]}}},
    ).json()
    return [r for r in runs if (r.get("created_by") or {}).get("type") == "AUTOMATION"]


_seeds = itertools.count()


def _add(store: Store, n: int) -> None:
    rng = np.random.default_rng(next(_seeds))
    images, labels = rng.integers(0, 256, (n, 28, 28), np.uint8), rng.integers(0, 10, n)
    store.add(images, labels, "test", "test_triggers")


def test_due_labels_start_one_retraining_per_cooldown(server, tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_RETRAIN_MIN_LABELS", "5")
    store = Store(f"sqlite:///{tmp_path / 'data.db'}")
    _add(store, 3)
    assert events.labels_arrived(store, 3, "add")  # 3 of 5: not due
    time.sleep(3)  # ten times what a due event takes to schedule a run (below)
    assert _triggered(server) == []

    _add(store, 3)
    started = time.monotonic()
    assert events.labels_arrived(store, 3, "add")  # 6 of 5: due
    [run] = _wait(lambda: _triggered(server))
    took = time.monotonic() - started
    print(f"\nmnist.data.added (due) -> mnist-retrain run scheduled: {took:.2f} s")
    assert run["state"]["type"] == "SCHEDULED"
    assert run["parameters"]["reason"] == "6 new labels since the champion (last from add)"
    assert run["parameters"]["config"]["init_from"] == "models:/mnist-cnn@champion"

    notes = events.LabelEvents(store.url, interval=0.2)  # a flood of trusted feedback
    for _ in range(30):
        notes.note(1, "feedback")
        time.sleep(0.05)
    notes.close()
    assert notes.sent >= 3

    def stored() -> list[str] | None:
        """The due flags of every event the server has stored, once it holds all sent (the
        server persists events in batches, seconds after taking them)."""
        found = httpx.post(
            f"{server}/events/filter",
            json={"filter": {"event": {"name": [events.DATA_ADDED]}}, "limit": 50},
        ).json()["events"]
        flags = [e["resource"][RETRAIN_DUE] for e in found]
        return flags if len(flags) >= 2 + notes.sent else None

    flags = _wait(stored)
    time.sleep(2)  # past the stored events, the triggers have seen them too
    assert len(_triggered(server)) == 1  # the cool-down: one run however many due events
    print(f"{flags.count('true')} due events within the cool-down -> 1 run")
    assert flags.count("false") == 1 and flags.count("true") >= 1 + 3


def test_drift_reaches_the_webhook(receiver):
    resource = {"prefect.resource.id": "mnist.monitor.mnist-cnn", "mnist.model": "mnist-cnn"}
    payload = {"verdict": "drift", "predictions": 400, "version": "3", "scores": {"x": 0.9}}
    started = time.monotonic()
    assert events.emit("mnist.monitor.ok", resource, {**payload, "verdict": "ok"})
    assert events.emit("mnist.monitor.drift", resource, payload)
    at, alert = receiver.wait(lambda b: "drift" in b.get("subject", ""))
    print(f"\nmnist.monitor.drift -> alert at the webhook: {at - started:.2f} s")
    assert "400 predictions of v3" in alert["body"] and '"x": 0.9' in alert["body"]
    assert alert["text"].startswith(alert["subject"])
    time.sleep(2)
    assert sum("monitor" in body.get("subject", "") for _, _, body in receiver.posts) == 1


def test_the_gate_alerts_at_its_streak(receiver):
    gate = {"prefect.resource.id": "mnist.gate.mnist-cnn"}
    payload = {"model": "mnist-cnn", "challenger": "9", "champion": "4", "reason": "too weak"}
    events.emit(automations.GATE_DECIDED, {**gate, automations.GATE_ALERT: "false"}, payload)
    events.emit(
        automations.GATE_DECIDED, {**gate, automations.GATE_ALERT: "true"}, {**payload, "streak": 3}
    )
    _, alert = receiver.wait(lambda b: "gate" in b.get("subject", ""))
    assert alert["subject"] == "mnist: the gate rejected 3 challengers in a row"
    assert "mnist-cnn v9 was rejected: too weak" in alert["body"]
    time.sleep(2)
    assert sum("gate" in body.get("subject", "") for _, _, body in receiver.posts) == 1


def test_a_failed_run_of_a_deployment_alerts(server, receiver):
    deployment = httpx.get(f"{server}/deployments/name/mnist-training/mnist-train").json()
    runs = [
        httpx.post(f"{server}/deployments/{deployment['id']}/create_flow_run", json={}).json()
        for _ in range(2)
    ]
    for run, end in zip(runs, ("COMPLETED", "FAILED"), strict=True):
        for state in ("RUNNING", end):
            httpx.post(
                f"{server}/flow_runs/{run['id']}/set_state",
                json={"state": {"type": state, "message": "out of memory"}, "force": True},
            ).raise_for_status()
    _, alert = receiver.wait(lambda b: "mnist-train" in b.get("subject", ""))
    assert alert["subject"] == f"mnist: {runs[1]['name']} of mnist-train Failed"
    assert "out of memory" in alert["body"] and runs[1]["id"] in alert["body"]
    time.sleep(2)
    assert sum("mnist-train" in body.get("subject", "") for _, _, body in receiver.posts) == 1


def test_an_apprise_url_gets_the_alert_through_apprise(receiver):
    try:
        made = automations.ensure_alerts(f"json://127.0.0.1:{receiver.server.server_port}/ap")
        assert set(made.values()) == {"updated"}  # another block: the automations follow it
        resource = {"prefect.resource.id": "mnist.monitor.apprise"}
        events.emit("mnist.monitor.drift", resource, {"verdict": "drift"})
        _, alert = receiver.wait(lambda b: "mnist.monitor.apprise" in b.get("title", ""))
        assert alert["type"] == "warning" and "drift" in alert["message"]
    finally:
        automations.ensure_alerts(f"{receiver.url}/hook")


def test_the_gate_counts_rejections_in_a_row_from_the_registry(server):
    from mnist.tracking import client, experiment_id
    from tasks.gate import rejections

    name = "streak-model"
    client().create_registered_model(name)
    assert rejections(name) == 0
    for decision in ("rejected", "promoted", "rejected", None, "rejected", "rejected"):
        run = client().create_run(experiment_id("streak")).info
        tags = {"decision": decision} if decision else {}
        client().create_model_version(name, f"{run.artifact_uri}/model", run.run_id, tags=tags)
    assert rejections(name) == 3  # newest first, past the unjudged one, to the promotion
