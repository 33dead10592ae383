"""The scheduled retraining deployment, for real: `prefect server`, `mlflow server`, the
project's prefect.yaml, a process worker, then the Prefect and MLflow APIs."""

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import pytest
from mlflow import MlflowClient
from PIL import Image

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # real servers and processes: the full suite only

BIN = Path(sys.executable).parent


def _run(args, env, cwd=ROOT, timeout=600):
    proc = subprocess.run(args, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, f"{args}: {proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
    return proc.stdout


@pytest.fixture(scope="module")
def deployed_run(prefect_server, mlflow_server, mnist_path, tmp_path_factory):
    """Deploy from prefect.yaml, trigger mnist-retrain by hand, run a worker until it ends."""
    api, home = prefect_server
    env = {
        **os.environ,
        "PREFECT_API_URL": api,
        "PREFECT_HOME": str(home),
        "MLFLOW_TRACKING_URI": mlflow_server,
        "MNIST_DATA_DIR": str(mnist_path),
        "MNIST_DATASTORE": f"sqlite:///{home / 'mnist-data.db'}",
    }
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    prefect = str(BIN / "prefect")
    _run([prefect, "work-pool", "create", "mnist-process", "--type", "process"], env)
    _run([prefect, "--no-prompt", "deploy", "--all"], env)
    config = {
        "model": "small",
        "epochs": 2,
        "train_limit": 4000,
        "test_limit": 1000,
        "experiment": "deployed",
    }
    params = {"config": config, "gate": {"floor": 0.8}}
    out = _run(
        [
            prefect,
            "deployment",
            "run",
            "mnist-retrain/mnist-retrain",
            "--params",
            json.dumps(params),
        ],
        env,
    )
    run_id = next(line.split()[-1] for line in out.splitlines() if "UUID" in line)
    _run([prefect, "worker", "start", "--pool", "mnist-process", "--run-once"], env)
    return api, run_id, env


@pytest.mark.slow
def test_deployment_has_the_weekly_schedule(deployed_run):
    api, _, _ = deployed_run
    deployment = httpx.get(f"{api}/deployments/name/mnist-retrain/mnist-retrain").json()
    assert deployment["work_pool_name"] == "mnist-process"
    assert [s["schedule"]["cron"] for s in deployment["schedules"]] == ["0 3 * * 1"]
    assert deployment["parameters"] == {
        "config": {"profile": "default", "init_from": "models:/mnist-cnn@champion"}
    }
    assert deployment["pull_steps"][0]["prefect.deployments.steps.set_working_directory"][
        "directory"
    ] == str(ROOT)


@pytest.mark.slow
def test_monitor_runs_hourly_and_due_labels_trigger_retraining(deployed_run):
    api, _, _ = deployed_run
    monitor = httpx.get(f"{api}/deployments/name/mnist-monitor/mnist-monitor").json()
    assert [s["schedule"]["cron"] for s in monitor["schedules"]] == ["0 * * * *"]
    retrain = httpx.get(f"{api}/deployments/name/mnist-retrain/mnist-retrain").json()
    automations = httpx.post(f"{api}/automations/filter", json={}).json()
    [trigger] = [a for a in automations if a["name"] == "mnist: retrain when new labels are due"]
    assert trigger["trigger"]["match"]["mnist.retrain.due"] == "true"
    assert trigger["actions"][0]["deployment_id"] == retrain["id"]


@pytest.mark.slow
def test_triggered_run_completes_with_its_artifacts(deployed_run):
    api, run_id, _ = deployed_run
    run = httpx.get(f"{api}/flow_runs/{run_id}").json()
    assert run["state"]["type"] == "COMPLETED", run["state"]
    assert run["name"] == "retrain-small-e2-s42"
    assert {"mnist", "retrain"} <= set(run["tags"])
    artifacts = httpx.post(
        f"{api}/artifacts/filter", json={"flow_runs": {"id": {"any_": [run_id]}}}
    ).json()
    keys = {a["key"] for a in artifacts}
    assert {"retrain-decision", "per-class-metrics"} <= keys
    decision = next(a for a in artifacts if a["key"] == "retrain-decision")
    assert "promoted" in decision["data"] and "no champion yet" in decision["data"]
    logs = httpx.post(f"{api}/logs/filter", json={"logs": {"flow_run_id": {"any_": [run_id]}}})
    assert any("epoch 2/2" in entry["message"] for entry in logs.json())


@pytest.mark.slow
def test_the_gate_tells_its_decision_as_an_event(deployed_run):
    api, run_id, _ = deployed_run
    deadline = time.monotonic() + 10  # the server files events a moment after receiving them
    while not (
        found := httpx.post(
            f"{api}/events/filter",
            json={"filter": {"event": {"name": ["mnist.gate.decided"]}}},
        ).json()["events"]
    ):
        assert time.monotonic() < deadline, "no mnist.gate.decided event"
        time.sleep(0.5)
    [event] = found
    assert event["resource"]["prefect.resource.id"] == "mnist.gate.mnist-cnn"
    assert event["resource"]["mnist.gate.alert"] == "false"
    assert event["payload"]["decision"] == "promoted" and event["payload"]["streak"] == 0
    assert f"prefect.flow-run.{run_id}" in {r["prefect.resource.id"] for r in event["related"]}


@pytest.mark.slow
def test_registry_on_the_server_follows_the_gate(deployed_run, mlflow_server):
    client = MlflowClient(tracking_uri=mlflow_server)
    versions = client.search_model_versions("name = 'mnist-cnn'")
    assert len(versions) == 1
    champion = client.get_model_version_by_alias("mnist-cnn", "champion")
    assert champion.version == versions[0].version
    assert champion.tags["decision"] == "promoted"
    run = client.get_run(champion.run_id)
    assert run.data.tags["gate.decision"] == "promoted"
    assert run.data.metrics["gate.challenger_test_accuracy"] >= 0.8


@pytest.mark.slow
def test_predict_with_the_champion_from_another_directory(deployed_run, mnist_data, tmp_path):
    _, _, env = deployed_run
    paths = []
    for i in range(5):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(mnist_data.test.images[i]).save(paths[-1])
    out = _run(
        [str(BIN / "mnist"), "predict", "--model", "models:/mnist-cnn@champion", *map(str, paths)],
        env,
        cwd=tmp_path,
    )
    predicted = [int(line.split()[1]) for line in out.splitlines()[1:]]
    assert sum(p == t for p, t in zip(predicted, mnist_data.test.labels[:5], strict=True)) >= 4


@pytest.mark.slow
def test_mnist_train_against_the_server_reports_every_task_run(deployed_run):
    """`mnist train` against a real Prefect server ends without the interpreter's teardown
    (`app.cli.run`): the flow run and every task run still end COMPLETED on the server."""
    api, _, env = deployed_run
    out = _run(
        [
            str(BIN / "mnist"),
            "train",
            "--model",
            "small",
            "--epochs",
            "1",
            "--train-limit",
            "2000",
            "--test-limit",
            "500",
            "--experiment",
            "cli",
            "--no-register",
        ],
        env,
    )
    assert "test accuracy:" in out
    flows = httpx.post(
        f"{api}/flow_runs/filter", json={"flow_runs": {"tags": {"all_": ["train"]}}}
    ).json()
    assert len(flows) == 1 and flows[0]["state"]["type"] == "COMPLETED", flows
    deadline = time.monotonic() + 10  # the server files events a moment after receiving them
    while True:
        tasks = httpx.post(
            f"{api}/task_runs/filter", json={"flow_runs": {"id": {"any_": [flows[0]["id"]]}}}
        ).json()
        states = {t["name"]: t["state"]["type"] if t["state"] else None for t in tasks}
        if len(tasks) >= 6 and set(states.values()) == {"COMPLETED"}:
            break
        assert time.monotonic() < deadline, states
        time.sleep(0.5)
