"""The triggers of the alerts (`flows.automations`) and of the retraining (`prefect.yaml`),
judged by the Prefect server's own matching code (`EventTrigger.covers`) against the events
this project sends; on a real server: tests/integration/test_triggers.py."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime

import pytest
import yaml
from prefect.server.events.schemas.automations import EventTrigger
from prefect.server.events.schemas.events import ReceivedEvent

from app import events
from flows import automations
from mnist.errors import MnistError
from mnist.event_names import RETRAIN_DUE
from tests.conftest import ROOT


def _event(
    name: str, resource: dict[str, str], related: Sequence[dict[str, str]] = ()
) -> ReceivedEvent:
    now = datetime.now(UTC)
    return ReceivedEvent.model_validate(
        {
            "id": uuid.uuid4(),
            "occurred": now,
            "received": now,
            "event": name,
            "resource": resource,
            "related": list(related),
            "payload": {},
        }
    )


@pytest.fixture(scope="module")
def alerts() -> dict[str, EventTrigger]:
    made = automations._alerts(uuid.uuid4())
    return {a.name: EventTrigger.model_validate(a.trigger.model_dump()) for a in made}


def _run_ended(state: str, deployment: str) -> ReceivedEvent:
    return _event(
        f"prefect.flow-run.{state}",
        {"prefect.resource.id": f"prefect.flow-run.{uuid.uuid4()}"},
        [
            {
                "prefect.resource.id": f"prefect.deployment.{uuid.uuid4()}",
                "prefect.resource.role": "deployment",
                "prefect.resource.name": deployment,
            }
        ],
    )


def test_a_failed_or_crashed_run_of_our_deployments_alerts(alerts):
    failed = alerts[automations.FAILED]
    for name in ("mnist-retrain", "mnist-train", "mnist-sweep", "mnist-monitor"):
        assert failed.covers(_run_ended("Failed", name))
        assert failed.covers(_run_ended("Crashed", name))
    assert not failed.covers(_run_ended("Completed", "mnist-retrain"))
    assert not failed.covers(_run_ended("Failed", "someone-else"))


def test_drift_alerts_and_ok_does_not(alerts):
    drift = alerts[automations.DRIFT]
    monitor = {"prefect.resource.id": "mnist.monitor.mnist-cnn"}
    assert drift.covers(_event("mnist.monitor.drift", monitor))
    assert not drift.covers(_event("mnist.monitor.ok", monitor))


def test_the_gate_alerts_once_its_streak_is_marked(alerts):
    rejected = alerts[automations.REJECTED]
    gate = {"prefect.resource.id": "mnist.gate.mnist-cnn"}
    assert rejected.covers(
        _event(automations.GATE_DECIDED, {**gate, automations.GATE_ALERT: "true"})
    )
    assert not rejected.covers(
        _event(automations.GATE_DECIDED, {**gate, automations.GATE_ALERT: "false"})
    )


def _deployments() -> dict[str, dict]:
    spec = yaml.safe_load((ROOT / "prefect.yaml").read_text())
    return {d["name"]: d for d in spec["deployments"]}


def test_retraining_is_triggered_by_due_labels_only():
    [spec] = _deployments()["mnist-retrain"]["triggers"]
    fields = ("expect", "match", "posture", "threshold", "within")
    trigger = EventTrigger.model_validate({k: spec[k] for k in fields})
    labels = {"prefect.resource.id": "mnist.data.mnist-cnn"}
    assert trigger.covers(_event(events.DATA_ADDED, {**labels, RETRAIN_DUE: "true"}))
    assert not trigger.covers(_event(events.DATA_ADDED, {**labels, RETRAIN_DUE: "false"}))
    assert trigger.posture == "Reactive" and trigger.threshold == 1
    assert trigger.within.total_seconds() >= 600  # a cool-down: one run per flood of labels
    assert "{{ event.payload.new_labels }}" in spec["parameters"]["reason"]


def test_the_monitor_deployment_runs_hourly_from_its_flow():
    """Its entrypoint names the flow `mnist-monitor` (read, not imported: no Keras here)."""
    import ast

    monitor = _deployments()["mnist-monitor"]
    path, name = monitor["entrypoint"].split(":")
    tree = ast.parse((ROOT / path).read_text())
    [function] = [f for f in ast.walk(tree) if isinstance(f, ast.FunctionDef) and f.name == name]
    names = [
        k.value.value
        for d in function.decorator_list
        if isinstance(d, ast.Call) and getattr(d.func, "id", None) == "flow"
        for k in d.keywords
        if k.arg == "name" and isinstance(k.value, ast.Constant)
    ]
    assert names == ["mnist-monitor"]
    assert [s["cron"] for s in monitor["schedules"]] == ["0 * * * *"]


def test_an_alert_url_apprise_cannot_reach_is_one_line():
    with pytest.raises(MnistError, match=r"^MNIST_ALERT_URL: apprise cannot send to nosuch://$"):
        automations.save_block("nosuch://somewhere")


def test_an_automation_read_back_in_another_order_is_the_same():
    """The server hands a trigger's sets back as lists in its own order; in a process whose
    string hashes collide, a set built from them iterates in that order (seen in CI)."""
    sent = {"trigger": {"expect": ["prefect.flow-run.Crashed", "prefect.flow-run.Failed"]}}
    back = {"trigger": {"expect": ["prefect.flow-run.Failed", "prefect.flow-run.Crashed"]}}
    assert automations._canonical(sent) == automations._canonical(back)
    actions = {"actions": [{"type": "send-notification"}, {"type": "run-deployment"}]}
    swapped = {"actions": actions["actions"][::-1]}
    assert automations._canonical(actions) != automations._canonical(swapped)  # order matters


def test_the_zombie_window_is_three_beats_and_never_one():
    """The stack's window misses three beats; a shorter one (tests) must still outlast one
    beat, or live runs would crash between two (checked before any server is asked)."""
    assert automations.ZOMBIE_SECONDS == 3 * automations.HEARTBEAT_SECONDS == 90
    with pytest.raises(ValueError, match="not past a 30 s beat"):
        automations.ensure_zombie_detection(automations.HEARTBEAT_SECONDS)
