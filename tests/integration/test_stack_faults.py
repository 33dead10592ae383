"""Faults a shared stack meets, on real processes: `prefect server` and `mlflow server` on a
real PostgreSQL (each started by the fixtures, as a service manager would),
process workers, `mnist` commands as clients.

- two workers take a training run and a retraining run at once, and a retraining elsewhere
  (another HOME: another lock directory) gates at the same time as a worker's;
- a worker is killed (with its flow run's process) in the middle of a run.
"""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import pytest

from mnist.waiting import wait_until
from tests.conftest import ROOT
from tests.servers import Postgres, Server, free_port, start_servers, stop_server, tree

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
FINAL = ("COMPLETED", "FAILED", "CRASHED", "CANCELLED")


class Service:
    """A server process (started by `start_servers`)."""

    def __init__(self, server: Server, proc: subprocess.Popen):
        self.args, self.health, self.log, self.env = server
        self.proc = proc

    def stop(self) -> None:
        stop_server(self.proc)


@pytest.fixture(scope="module")
def stack(tmp_path_factory, mnist_path):
    """PostgreSQL with the stack's databases, `prefect server` and `mlflow server` on it."""
    root = tmp_path_factory.mktemp("stack")
    pg = Postgres()
    prefect_port, mlflow_port = free_port(), free_port()
    database = pg.url("prefect", "asyncpg")
    prefect_env = {
        "PREFECT_HOME": str(root / "prefect"),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_API_DATABASE_CONNECTION_URL": database,
    }
    prefect_spec: Server = (
        [
            str(BIN / "prefect"),
            "server",
            "start",
            "--host",
            "127.0.0.1",
            "--port",
            str(prefect_port),
        ],
        f"http://127.0.0.1:{prefect_port}/api/health",
        root / "prefect.log",
        prefect_env,
    )
    mlflow_spec: Server = (
        [
            str(BIN / "mlflow"),
            "server",
            "--host",
            "127.0.0.1",
            "--port",
            str(mlflow_port),
            "--workers",
            "1",
            "--backend-store-uri",
            pg.url("mlflow", "psycopg"),
            "--artifacts-destination",
            str(root / "artifacts"),
        ],
        f"http://127.0.0.1:{mlflow_port}/health",
        root / "mlflow.log",
        {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"},
    )
    # Both at once: their start-ups overlap (about 10 s less than one after the other).
    procs = start_servers(prefect_spec, mlflow_spec)
    prefect, mlflow_service = Service(prefect_spec, procs[0]), Service(mlflow_spec, procs[1])
    env = {
        **os.environ,
        "PREFECT_API_URL": f"http://127.0.0.1:{prefect_port}/api",
        "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{mlflow_port}",
        "MNIST_DATASTORE": pg.url("mnist_data"),
        "MNIST_DATA_DIR": str(mnist_path),
        "PREFECT_HOME": str(root / "client"),
    }
    env.pop("PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS", None)
    yield dict(pg=pg, prefect=prefect, mlflow=mlflow_service, env=env, root=root)
    prefect.stop()
    mlflow_service.stop()
    pg.close()


def _runs(uri: str, experiment: str) -> list:
    client = mlflow.MlflowClient(uri)
    exp = client.get_experiment_by_name(experiment)
    return client.search_runs([exp.experiment_id]) if exp else []


def _wait_for_epochs(uri: str, experiment: str, epochs: int, timeout: float = 300):
    """The experiment's run once it has logged `epochs` epochs."""

    def logged():
        for run in _runs(uri, experiment):
            history = mlflow.MlflowClient(uri).get_metric_history(run.info.run_id, "accuracy")
            if len(history) >= epochs:
                return run
        return None

    try:
        return wait_until(logged, timeout, 0.5)
    except TimeoutError:
        raise TimeoutError(f"no run in {experiment} logged {epochs} epoch(s)") from None


def _worker(env: dict[str, str], log: Path) -> subprocess.Popen:
    return subprocess.Popen(
        [str(BIN / "prefect"), "worker", "start", "--pool", "mnist-process", "--type", "process"],
        env=env,
        cwd=ROOT,
        stdout=log.open("w"),
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )


def _trigger(env: dict[str, str], deployment: str, params: dict) -> str:
    out = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", deployment, "--params", json.dumps(params)],
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-2000:]
    return next(line.split()[-1] for line in out.stdout.splitlines() if "UUID" in line)


def _flow_run(env: dict[str, str], run_id: str) -> dict:
    return httpx.get(f"{env['PREFECT_API_URL']}/flow_runs/{run_id}").json()


def _wait(env: dict[str, str], run_id: str, timeout: float = 600) -> dict:
    def ended() -> dict | None:
        run = _flow_run(env, run_id)
        return run if run["state"]["type"] in FINAL else None

    return wait_until(ended, timeout, 2)


def _story(env: dict[str, str], run: dict) -> str:
    """A flow run's final state and the last of its logs, for a failure's message."""
    logs = httpx.post(
        f"{env['PREFECT_API_URL']}/logs/filter",
        json={
            "logs": {"flow_run_id": {"any_": [run["id"]]}},
            "sort": "TIMESTAMP_DESC",
            "limit": 30,
        },
    ).json()
    lines = "\n".join(entry["message"][-600:] for entry in reversed(logs))
    return f"{run['name']}: {run['state']['type']} ({run['state']['message']})\n{lines}"


CONFIG = {"model": "small", "epochs": 2, "train_limit": 6000, "test_limit": 1000}
ZOMBIE_SECONDS = 50
"""The zombie automation's window here: past one 30-s beat (Prefect's floor) with 20 s to
spare, where the stack waits for three (90 s): the killed run crashes about 40 s sooner."""


@pytest.fixture(scope="module")
def workers(stack):
    """The deployments of prefect.yaml, the zombie automation and two process workers on
    `mnist-process` whose flow runs beat every 30 s, as `make stack-up` sets them up (but
    crashed after 50 s without a beat, and polling every 2 s)."""
    from prefect.settings import PREFECT_API_URL, temporary_settings

    from app.stack import deploy
    from flows.automations import HEARTBEAT_SECONDS, ensure_zombie_detection

    deploy(stack["env"])
    with temporary_settings({PREFECT_API_URL: stack["env"]["PREFECT_API_URL"]}):
        created = ensure_zombie_detection(ZOMBIE_SECONDS)
        assert created and not ensure_zombie_detection(ZOMBIE_SECONDS)  # created once
    stack["env"]["PREFECT_FLOWS_HEARTBEAT_FREQUENCY"] = str(HEARTBEAT_SECONDS)
    stack["env"]["PREFECT_WORKER_QUERY_SECONDS"] = "2"
    procs = [_worker(stack["env"], stack["root"] / f"worker{i}.log") for i in (1, 2)]
    yield procs  # a test that kills one starts another in its place
    _stop([proc for proc in procs if proc.poll() is None])


def _stop(workers: list[subprocess.Popen]) -> None:
    """SIGTERM, then SIGKILL after 20 s, as supervisord does (`stopwaitsecs`): a Prefect worker
    on a busy machine was seen still running 60 s after SIGTERM; no orphan is left."""
    for proc in workers:
        os.killpg(proc.pid, signal.SIGTERM)
    for proc in workers:
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            print(f"\nworker {proc.pid} still running 20 s after SIGTERM: killed")
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_two_workers_run_a_training_and_a_retraining_at_once(stack, workers, tmp_path):
    env, name = stack["env"], "two-workers"
    assert len(workers) == 2 and all(w.poll() is None for w in workers)
    config = CONFIG | {"registered_model": name, "experiment": name}
    gate = {"floor": 0.8}
    trained = _trigger(env, "mnist-training/mnist-train", {"config": config | {"seed": 1}})
    retrained = _trigger(env, "mnist-retrain/mnist-retrain", {"config": config, "gate": gate})
    # ... and a retraining from elsewhere: another HOME, so another lock directory; only
    # Prefect's leased limit on the server keeps its gate and the worker's apart.
    home = tmp_path / "home"
    home.mkdir()
    elsewhere = subprocess.run(
        [
            str(BIN / "mnist"),
            "retrain",
            "--model",
            "small",
            "--epochs",
            "2",
            "--train-limit",
            "6000",
            "--test-limit",
            "1000",
            "--seed",
            "7",
            "--registered-model",
            name,
            "--experiment",
            name,
            "--floor",
            "0.8",
        ],
        env={**env, "HOME": str(home)},
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert elsewhere.returncode == 0, elsewhere.stderr[-3000:]
    runs = [_wait(env, trained), _wait(env, retrained)]
    states = [r["state"]["type"] for r in runs]
    assert states == ["COMPLETED", "COMPLETED"], [_story(env, r) for r in runs]
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    versions = client.search_model_versions(f"name = '{name}'")
    gated = [v for v in versions if "decision" in v.tags]
    assert len(versions) == 3 and len(gated) == 2
    # One gate at a time: exactly one of them found no champion; the other judged against it.
    first = [v for v in gated if v.tags["compared_to_version"] == "none"]
    assert len(first) == 1, [v.tags for v in gated]
    (second,) = [v for v in gated if v is not first[0]]
    assert second.tags["compared_to_version"] == str(first[0].version)


def test_a_killed_worker_leaves_nothing_running_or_half_registered(stack, workers):
    env, name = stack["env"], "killed-worker"
    config = CONFIG | {"registered_model": name, "experiment": name, "epochs": 8}
    _stop(workers[1:])  # one worker, so that we know which to kill
    try:
        _kill_a_worker_mid_run(stack, workers, config, name)
    finally:  # the machine comes back: two workers again, for whichever test comes next
        workers[:] = [
            w if w.poll() is None else _worker(env, stack["root"] / f"w{i}b.log")
            for i, w in enumerate(workers)
        ]


def _kill_a_worker_mid_run(stack, workers, config: dict, name: str) -> None:
    env = stack["env"]
    doomed = _trigger(env, "mnist-retrain/mnist-retrain", {"config": config})
    run = _wait_for_epochs(env["MLFLOW_TRACKING_URI"], name, 1)
    for pid in reversed(tree(workers[0].pid)):  # the worker and its flow run's process
        os.kill(pid, signal.SIGKILL)
    workers[0].wait(timeout=60)
    killed = time.monotonic()
    # The server's zombie automation crashes the run once its heartbeats stop (for
    # ZOMBIE_SECONDS), which also frees the deployment's concurrency slot for the next run.
    crashed = _wait(env, doomed, timeout=300)
    print(
        f"\nflow run CRASHED by the server {time.monotonic() - killed:.0f} s after the kill: "
        f"{crashed['state']['message']}"
    )
    assert crashed["state"]["type"] == "CRASHED"
    assert crashed["state"]["message"].startswith(f"no heartbeat for {ZOMBIE_SECONDS} s")
    workers[1] = _worker(env, stack["root"] / "worker3.log")  # the machine comes back
    nxt = _trigger(
        env,
        "mnist-retrain/mnist-retrain",
        {"config": config | {"epochs": 1}, "gate": {"floor": 0.5}},
    )
    assert _wait(env, nxt)["state"]["type"] == "COMPLETED"
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert client.get_run(run.info.run_id).info.status == "FAILED"
    versions = client.search_model_versions(f"name = '{name}'")
    assert [v.run_id for v in versions] != [] and run.info.run_id not in {
        v.run_id for v in versions
    }
