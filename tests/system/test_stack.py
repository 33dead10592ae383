"""The production stack as `make stack-up` brings it up (app/stack/ under supervisord): a real
PostgreSQL, `prefect server` and `mlflow server` on it with proxied artifacts, two process
workers, a Dask scheduler and worker; bound to 0.0.0.0, so with authentication (and TLS with
client certificates for Dask). End to end: deploy from prefect.yaml, a worker retrains, a sweep
runs its trials on the stack's Dask, the registry and `mnist serve` from another directory with
another HOME. Pieces killed with `kill -9` come back on their own while the others keep
running. Then `make stack-down`, and a second start that keeps the state."""

import contextlib
import json
import os
import shlex
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import httpx
import numpy as np
import pytest

from mnist.waiting import answers, wait_until
from tests.conftest import ROOT
from tests.servers import Webhook, ahead, free_port, start_server, stop_server, stopped, tree

if TYPE_CHECKING:
    from mlflow import MlflowClient

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
PASSWORD = "stack-test-secret"


def _stack(env: dict[str, str], action: str) -> subprocess.CompletedProcess:
    """`python -m app.stack action`. After `up`, the stack's session (supervisord and every
    piece it starts or restarts) goes ahead of the other test processes' sessions for the CPU,
    as on a machine of its own: its restarts are timed (ADR 0100)."""
    done = subprocess.run(
        [sys.executable, "-m", "app.stack", action],
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    from app.stack import Stack
    from app.stack.supervisor import running

    if action == "up" and (pid := running(Stack.from_env(env))) is not None:
        ahead(pid)
    return done


def _exports(text: str) -> dict[str, str]:
    return {
        k: v
        for line in text.splitlines()
        if line.startswith("export ")
        for k, _, v in [shlex.split(line[7:])[0].partition("=")]
    }


@pytest.fixture(scope="module")
def webhook():
    """Where the stack's alerts go (MNIST_ALERT_URL)."""
    hook = Webhook()
    yield hook
    hook.close()


@pytest.fixture(scope="module")
def stack(mnist_path, webhook):
    root = Path(tempfile.mkdtemp(prefix="mnist-stack-"))  # PostgreSQL's user must reach it
    env = {
        **os.environ,
        "MNIST_ALERT_URL": f"{webhook.url}/hook",
        "MNIST_STACK_DIR": str(root),
        "MNIST_STACK_HOST": "0.0.0.0",
        "MNIST_STACK_PG_PORT": str(free_port()),
        "MNIST_STACK_PREFECT_PORT": str(free_port()),
        "MNIST_STACK_MLFLOW_PORT": str(free_port()),
        "MNIST_STACK_DASK_PORT": str(free_port()),
        "MNIST_STACK_DASK_HTTP_PORT": str(free_port()),
        "MNIST_STACK_WORKERS": "2",
        "PREFECT_WORKER_QUERY_SECONDS": "2",  # the workers take a run within 2 s, not 10
        "MNIST_STACK_PASSWORD": PASSWORD,
        "MNIST_DATA_DIR": str(mnist_path),
    }
    for key in ("MLFLOW_TRACKING_URI", "PREFECT_API_URL"):
        env.pop(key, None)
    started = time.monotonic()
    up = _stack(env, "up")
    seconds = time.monotonic() - started
    logs = "".join(f"{p.name}:\n{p.read_text()[-2000:]}" for p in (root / "logs").glob("*.log"))
    assert up.returncode == 0, up.stderr[-3000:] + logs
    print(f"\nstack up in {seconds:.1f} s (cold)")
    yield root, env, _exports(up.stdout), seconds
    if _stack(env, "down").returncode == 0:  # else kept for a post-mortem
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(autouse=True)
def healthy(stack):
    """Each test starts on a stack whose pieces all run and answer: a fault test before it may
    have left one coming back."""
    _, env, exports, _ = stack
    if not (Path(env["MNIST_STACK_DIR"]) / "supervisord.pid").exists():
        return  # stopped by the test of `stack down`, which starts it again itself
    _steady(env)
    for url in (f"{exports['PREFECT_API_URL']}/health", f"{exports['MLFLOW_TRACKING_URI']}/health"):
        wait_until(answers(url, ("admin", PASSWORD)), 120, 1)


def _client(stack, tmp_path: Path) -> dict[str, str]:
    """A client elsewhere: only the exports, its own HOME and working directory."""
    _, env, exports, _ = stack
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    keep = {k: v for k, v in os.environ.items() if not k.startswith(("MLFLOW_", "PREFECT_"))}
    return {**keep, **exports, "HOME": str(home), "MNIST_DATA_DIR": env["MNIST_DATA_DIR"]}


def _deployment_run(stack, cwd: Path, deployment: str, params: dict) -> str:
    """A flow run of `deployment` made by a client; its id."""
    out = subprocess.run(
        [str(BIN / "prefect"), "deployment", "run", deployment, "--params", json.dumps(params)],
        env=_client(stack, cwd),
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
    return next(line.split()[-1] for line in out.stdout.splitlines() if "UUID" in line)


def _wait_run(api: str, run_id: str, timeout: float = 600) -> dict:
    def ended() -> dict:
        run = httpx.get(f"{api}/flow_runs/{run_id}", auth=("admin", PASSWORD)).json()
        return (
            run if run["state"]["type"] in ("COMPLETED", "FAILED", "CRASHED", "CANCELLED") else {}
        )

    return wait_until(ended, timeout, 2)


def test_stack_up_prints_what_a_client_needs(stack):
    _, _, exports, seconds = stack
    assert set(exports) >= {
        "PREFECT_API_URL",
        "MLFLOW_TRACKING_URI",
        "MNIST_DATASTORE",
        "PREFECT_API_AUTH_STRING",
        "MLFLOW_TRACKING_PASSWORD",
        "MNIST_DASK_ADDRESS",
        "MNIST_SWEEP_STORAGE",
        "DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT",
    }
    assert exports["MLFLOW_TRACKING_PASSWORD"] == PASSWORD
    assert exports["MNIST_DASK_ADDRESS"].startswith("tls://127.0.0.1:")
    assert seconds < 300


def test_postgres_takes_no_one_without_the_password(stack):
    import psycopg

    _, env, exports, _ = stack
    port = int(env["MNIST_STACK_PG_PORT"])
    with pytest.raises(psycopg.OperationalError, match="password"):
        psycopg.connect(
            host="127.0.0.1", port=port, user="postgres", dbname="mlflow", connect_timeout=5
        )
    assert exports["MNIST_DATASTORE"].startswith("postgresql+psycopg://postgres:")


def test_no_password_is_on_a_command_line(stack):
    """Any user of the machine reads command lines (`ps`); the stack's passwords are only in
    its processes' environments, which only the stack's user reads."""
    from sqlalchemy.engine import make_url

    _, _, exports, _ = stack
    secrets = {PASSWORD, make_url(exports["MNIST_DATASTORE"]).password}
    assert None not in secrets
    command_lines = subprocess.run(
        ["ps", "-eo", "args"], capture_output=True, text=True, check=True
    ).stdout.splitlines()
    assert [line for line in command_lines if any(s and s in line for s in secrets)] == []


def test_dask_takes_no_one_without_a_certificate_of_the_stack(stack):
    """Its scheduler runs any code it is sent: bound beyond loopback, it speaks only TLS, and
    only to a peer that shows a certificate of the stack's own authority."""
    import socket
    import ssl

    _, env, exports, _ = stack
    port = int(env["MNIST_STACK_DASK_PORT"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as plain:
        plain.sendall(b"\x00" * 64)  # Dask's framing, unencrypted: the server hangs up
        with pytest.raises((ConnectionError, TimeoutError)) as caught:
            if not plain.recv(100):
                raise ConnectionResetError("closed")
        assert not isinstance(caught.value, TimeoutError)
    ca = exports["DASK_DISTRIBUTED__COMM__TLS__CA_FILE"]
    for cert in (None, exports["DASK_DISTRIBUTED__COMM__TLS__CLIENT__CERT"]):
        context = ssl.create_default_context(cafile=ca)
        context.check_hostname = False
        if cert:
            context.load_cert_chain(cert, exports["DASK_DISTRIBUTED__COMM__TLS__CLIENT__KEY"])
        raw = socket.create_connection(("127.0.0.1", port), timeout=5)
        with context.wrap_socket(raw) as tls:
            tls.settimeout(2)
            if cert is None:  # TLS 1.3: the refusal (an alert, or the close) comes with a read
                with pytest.raises(ssl.SSLError, match=r"CERTIFICATE_REQUIRED|EOF"):
                    tls.recv(100)
            else:  # accepted: Dask greets with its handshake (or waits for ours), no hang-up
                with contextlib.suppress(TimeoutError):
                    assert tls.recv(100), "the scheduler hung up on the stack's client certificate"


def test_a_sweep_runs_its_trials_on_the_stack_s_dask(stack, mlflow_client, tmp_path):
    """`mnist sweep` with nothing but the exports: the stack's scheduler over TLS, its
    PostgreSQL for the study."""
    import optuna

    _, _, exports, _ = stack
    options = ["--trials", "2", "--name", "on-the-stack", "--no-register", "--model", "small"]
    options += ["--epochs", "1", "--train-limit", "600", "--test-limit", "300"]
    out = subprocess.run(
        [str(BIN / "mnist"), "sweep", *options],
        env=_client(stack, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    study = optuna.load_study(study_name="on-the-stack", storage=exports["MNIST_SWEEP_STORAGE"])
    assert [t.state.name for t in study.trials] == ["COMPLETE", "COMPLETE"]
    runs = mlflow_client.search_runs(
        [e.experiment_id for e in mlflow_client.search_experiments()],
        "tags.`sweep.study` = 'on-the-stack'",
    )
    trials = [r for r in runs if "sweep.trial" in r.data.tags]
    assert len(trials) == 2 and all(r.data.tags["dask.worker"].startswith("tls://") for r in trials)


def test_unauthenticated_requests_get_401(stack):
    _, _, exports, _ = stack
    mlflow, prefect = exports["MLFLOW_TRACKING_URI"], exports["PREFECT_API_URL"]
    search = f"{mlflow}/api/2.0/mlflow/experiments/search?max_results=1"
    assert httpx.get(search).status_code == 401
    assert httpx.get(search, auth=("admin", "wrong")).status_code == 401
    assert httpx.get(search, auth=("admin", PASSWORD)).status_code == 200
    assert httpx.post(f"{prefect}/flows/filter", json={}).status_code == 401
    assert httpx.post(f"{prefect}/flows/filter", json={}, auth=("admin", "x")).status_code == 401
    assert (
        httpx.post(f"{prefect}/flows/filter", json={}, auth=("admin", PASSWORD)).status_code == 200
    )


def test_the_stack_alerts_on_an_event_sent_with_its_password(stack, webhook, monkeypatch):
    """`make stack-up` made the alerts (MNIST_ALERT_URL); app.events gets through the
    server's basic auth with the exported auth string, and only with it."""
    from app import events
    from flows.automations import ALERTS, ZOMBIE_SECONDS, ZOMBIES

    _, _, exports, _ = stack
    api = exports["PREFECT_API_URL"]
    automations = httpx.post(f"{api}/automations/filter", json={}, auth=("admin", PASSWORD))
    names = {a["name"] for a in automations.json()}
    assert {ZOMBIES, *ALERTS, "mnist: retrain when new labels are due"} <= names
    (zombies,) = [a for a in automations.json() if a["name"] == ZOMBIES]
    assert zombies["trigger"]["within"] == ZOMBIE_SECONDS == 90  # three missed 30-s beats
    monkeypatch.setenv("PREFECT_API_URL", api)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    resource = {"prefect.resource.id": "mnist.monitor.stack-test"}
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:wrong")
    assert not events.emit("mnist.monitor.drift", resource, {"verdict": "drift"})
    monkeypatch.setenv("PREFECT_API_AUTH_STRING", exports["PREFECT_API_AUTH_STRING"])
    assert events.emit("mnist.monitor.drift", resource, {"verdict": "drift"})
    _, alert = webhook.wait(lambda body: "mnist.monitor.stack-test" in body.get("subject", ""))
    assert "drift" in alert["subject"]


@pytest.fixture(scope="module")
def champion(stack, tmp_path_factory):
    """A retraining run from the deployment of prefect.yaml, taken by a worker: the first
    champion. Any test may come first (random order), and the stack may have restarted."""
    _, _, exports, _ = stack
    where = tmp_path_factory.mktemp("trigger")
    config = {
        "model": "small",
        "epochs": 2,
        "train_limit": 4000,
        "test_limit": 1000,
        "experiment": "stack",
    }
    params = {"config": config, "gate": {"floor": 0.8}}
    run_id = _deployment_run(stack, where, "mnist-retrain/mnist-retrain", params)
    return _wait_run(exports["PREFECT_API_URL"], run_id)


def test_a_worker_retrains_and_a_client_elsewhere_serves_the_champion(
    stack, champion, mnist_data, tmp_path
):
    root, _, _, _ = stack
    client = _client(stack, tmp_path)
    state = champion["state"]
    logs = "".join(f"{p.name}:\n{p.read_text()[-3000:]}" for p in (root / "logs").glob("w*.log"))
    assert state["type"] == "COMPLETED", f"{state['type']}: {state['message']}\n{logs}"

    listed = subprocess.run(
        [str(BIN / "mnist"), "registry", "list"],
        env=client,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert listed.returncode == 0, listed.stderr
    assert "champion" in listed.stdout.splitlines()[1]
    # The artifacts went through the server into its directory, not into this client's.
    assert list((root / "artifacts").rglob("MLmodel"))
    assert not list(tmp_path.rglob("MLmodel"))

    port = free_port()
    server = start_server(
        [str(BIN / "mnist"), "serve", "--port", str(port)],
        f"http://127.0.0.1:{port}/healthz",
        tmp_path / "serve.log",
        {k: v for k, v in client.items() if k not in os.environ or os.environ[k] != v},
    )
    try:
        images = mnist_data.test.images[:50]
        body = httpx.post(f"http://127.0.0.1:{port}/predict", json={"pixels": images.tolist()})
        digits = [p["digit"] for p in body.json()["predictions"]]
        assert np.mean(np.array(digits) == mnist_data.test.labels[:50]) >= 0.9
        assert body.json()["model"]["version"] == "1"
        sent = httpx.post(
            f"http://127.0.0.1:{port}/feedback", json={"pixels": images[0].tolist(), "label": 7}
        )
        assert sent.status_code == 201  # into the stack's PostgreSQL
    finally:
        stop_server(server)
    data = subprocess.run(
        [str(BIN / "mnist"), "data", "list"],
        env=client,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert "feedback" in data.stdout, data.stderr


def test_serving_beyond_loopback_needs_an_admin_token(stack, champion, tmp_path):
    client = _client(stack, tmp_path)
    refused = subprocess.run(
        [str(BIN / "mnist"), "serve", "--host", "0.0.0.0", "--port", str(free_port())],
        env=client,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert refused.returncode == 1
    assert refused.stderr.strip().endswith(
        "needs an admin token for POST /reload: set MNIST_SERVE_ADMIN_TOKEN"
    )
    port = free_port()
    token = {"MNIST_SERVE_ADMIN_TOKEN": "reload-secret"}
    server = start_server(
        [str(BIN / "mnist"), "serve", "--host", "0.0.0.0", "--port", str(port)],
        f"http://127.0.0.1:{port}/healthz",
        tmp_path / "serve.log",
        {k: v for k, v in client.items() if os.environ.get(k) != v} | token,
    )
    try:
        url = f"http://127.0.0.1:{port}/reload"
        assert httpx.post(url).status_code == 401
        assert httpx.post(url, headers={"Authorization": "Bearer wrong"}).status_code == 401
        ok = httpx.post(url, headers={"Authorization": "Bearer reload-secret"})
        assert ok.status_code == 200 and ok.json()["model"]["version"] == "1"
    finally:
        stop_server(server)


def _pieces(env: dict[str, str]) -> dict:
    """Each piece as supervisord sees it, by name."""
    from app.stack import Stack, pieces

    return {piece.name: piece for piece in pieces(Stack.from_env(env))}


def _steady(env: dict[str, str]) -> dict:
    """Each piece once all run (a worker of a stack just started may still be starting)."""

    def running() -> dict:
        now = _pieces(env)
        return now if all(piece.state == "RUNNING" for piece in now.values()) else {}

    return wait_until(running, 60, 0.5)


def _back(env: dict[str, str], name: str, before, healthy, killed: float) -> float:
    """Seconds from `killed` until the piece `name` runs again under a new pid, with one
    restart more than `before` had, and `healthy()` (it answers); at most 30."""
    timeout = 30

    def again() -> bool:
        now = _pieces(env)[name]
        return now.state == "RUNNING" and now.pid != before.pid and bool(healthy())

    try:
        wait_until(again, killed + timeout - time.monotonic(), 0.5)
    except TimeoutError:
        logs = Path(env["MNIST_STACK_DIR"]) / "logs"
        raise AssertionError(
            f"{name} not back within {timeout} s: {_pieces(env)[name]}\n"
            + (logs / "stack.log").read_text()[-2000:]
            + (logs / f"{name}.log").read_text()[-3000:]
        ) from None
    assert _pieces(env)[name].restarts == before.restarts + 1
    return time.monotonic() - killed


def _postgres(root: Path) -> list[int]:
    """The stack's PostgreSQL: its postmaster, then the processes below it."""
    return tree(int((root / "postgres" / "postmaster.pid").read_text().split()[0]))


def _train(client: dict[str, str], cwd: Path, name: str, *options: str) -> subprocess.Popen:
    """`mnist train` of a small model from a client, its output in `cwd/train.err`."""
    args = ["--model", "small", "--train-limit", "8000", "--test-limit", "1000", *options]
    return subprocess.Popen(
        [str(BIN / "mnist"), "train", *args, "--experiment", name, "--registered-model", name],
        env=client,
        cwd=cwd,
        stdout=subprocess.DEVNULL,
        stderr=(cwd / "train.err").open("w"),
    )


def _said(cwd: Path, text: str, proc: subprocess.Popen, timeout: float = 300) -> None:
    def seen() -> bool:
        assert proc.poll() is None, (cwd / "train.err").read_text()[-3000:]
        return text in (cwd / "train.err").read_text()

    wait_until(seen, timeout, 0.5)


@pytest.fixture
def mlflow_client(stack, monkeypatch) -> "MlflowClient":
    """A client of the stack's MLflow server, with its password."""
    from mlflow import MlflowClient

    monkeypatch.setenv("MLFLOW_TRACKING_USERNAME", "admin")
    monkeypatch.setenv("MLFLOW_TRACKING_PASSWORD", PASSWORD)
    return MlflowClient(stack[2]["MLFLOW_TRACKING_URI"])


def _takes_connections(exports: dict[str, str]) -> Callable[[], bool]:
    import psycopg

    def check() -> bool:
        try:
            url = exports["MNIST_DATASTORE"].replace("+psycopg", "")
            with psycopg.connect(url, connect_timeout=2):
                return True
        except psycopg.OperationalError:
            return False

    return check


def _kill(stack, name: str) -> float:
    """kill -9 of piece `name` (of PostgreSQL, its postmaster): the seconds until it is back on
    its own, every other piece untouched."""
    root, env, exports, _ = stack
    auth = ("admin", PASSWORD)
    healthy = {
        "postgres": _takes_connections(exports),
        "prefect": answers(f"{exports['PREFECT_API_URL']}/health", auth),
        "mlflow": answers(f"{exports['MLFLOW_TRACKING_URI']}/health", auth),
    }.get(name, lambda: True)
    before = _steady(env)
    os.kill(_postgres(root)[0] if name == "postgres" else before[name].pid, signal.SIGKILL)
    seconds = _back(env, name, before[name], healthy, time.monotonic())
    after = _pieces(env)
    assert after[name].last_exit == "terminated by SIGKILL; not expected"
    assert {n: p.pid for n, p in after.items() if n != name} == {
        n: p.pid for n, p in before.items() if n != name
    }
    return seconds


def _runs(client: "MlflowClient", experiment: str) -> list:
    found = client.get_experiment_by_name(experiment)
    return client.search_runs([found.experiment_id]) if found else []


def _run_of(client: "MlflowClient", experiment: str):
    (run,) = _runs(client, experiment)
    return run


def test_a_training_rides_out_a_frozen_postgres_and_each_server_killed(
    stack, mlflow_client, tmp_path
):
    """With a training in flight, PostgreSQL frozen for 30 s, then killed, then the Prefect
    server and the MLflow server killed in turn: each piece is back within 30 s on its own, and
    the run completes as if nothing happened: every epoch logged, one version registered, its
    flow run COMPLETED, no traceback."""
    root, env, exports, _ = stack
    client, name = _client(stack, tmp_path), "ride-out"
    proc = _train(client, tmp_path, name, "--epochs", "20")
    try:
        _said(tmp_path, "epoch 1/20", proc)
        with stopped(_postgres(root)):
            time.sleep(30)
        back = {}
        for piece in ("postgres", "prefect", "mlflow"):
            assert proc.poll() is None, "the training ended before the faults"
            back[piece] = _kill(stack, piece)
        print(f"\nback after kill -9 with a training in flight: {back}")
        status = subprocess.run(
            ["make", "-s", "stack-status"], cwd=ROOT, env=env, capture_output=True, text=True
        )
        rows = {r.split()[0]: r.split() for r in status.stdout.splitlines()[1:]}
        assert status.returncode == 0 and all(row[1] == "RUNNING" for row in rows.values())
        assert proc.wait(timeout=600) == 0, (tmp_path / "train.err").read_text()[-3000:]
    finally:
        proc.kill()
    err = (tmp_path / "train.err").read_text()
    assert "Traceback" not in err and "Error logging to API" not in err, err[-3000:]
    run = _run_of(mlflow_client, name)
    assert run.info.status == "FINISHED"
    assert len(mlflow_client.get_metric_history(run.info.run_id, "val_accuracy")) == 20
    assert [v.version for v in mlflow_client.search_model_versions(f"name='{name}'")] == ["1"]
    flow_run = httpx.get(
        f"{exports['PREFECT_API_URL']}/flow_runs/{run.data.tags['prefect.flow_run_id']}",
        auth=("admin", PASSWORD),
    ).json()
    assert flow_run["state"]["type"] == "COMPLETED"


def test_a_run_past_the_outage_limit_ends_in_one_line_and_the_next_run_tidies_up(
    stack, mlflow_client, tmp_path
):
    """PostgreSQL frozen for longer than the client waits (MNIST_OUTAGE_SECONDS=2): the command
    ends while it is frozen, in one line naming the store and the wait; nothing registered.
    The next run, once PostgreSQL is back, closes the runs it left open and completes."""
    root, _, exports, _ = stack
    # each MLflow request gives up after 3 s, not 10: the same one line, 30 s sooner
    limits = {"MNIST_OUTAGE_SECONDS": "2", "MLFLOW_HTTP_REQUEST_TIMEOUT": "3"}
    client = {**_client(stack, tmp_path), **limits}
    name = "past-limit"
    proc = _train(client, tmp_path, name, "--epochs", "20")
    try:
        _said(tmp_path, "MLflow run", proc)
        with stopped(_postgres(root)):
            started = time.monotonic()
            code = proc.wait(timeout=240)
            took = time.monotonic() - started
    finally:
        proc.kill()
    err = (tmp_path / "train.err").read_text()
    last = err.strip().splitlines()[-1]
    print(f"\nended {took:.0f} s into the freeze: {last}")
    assert code == 1, err[-3000:]
    assert last.startswith("mnist: error: the ") and " did not answer for over 2 s" in last
    assert "MNIST_OUTAGE_SECONDS sets how long a run waits" in last
    assert "Traceback" not in err, err[-3000:]
    assert mlflow_client.search_model_versions(f"name='{name}'") == []
    left = _run_of(mlflow_client, name)

    following = tmp_path / "next"
    following.mkdir()
    again = _train(client | {"MNIST_OUTAGE_SECONDS": "60"}, following, name, "--epochs", "1")
    assert again.wait(timeout=600) == 0, (following / "train.err").read_text()[-3000:]
    assert "closed 1 run(s) left open by killed processes" in (following / "train.err").read_text()
    assert mlflow_client.get_run(left.info.run_id).info.status == "FAILED"
    flow_run = httpx.get(
        f"{exports['PREFECT_API_URL']}/flow_runs/{left.data.tags['prefect.flow_run_id']}",
        auth=("admin", PASSWORD),
    ).json()
    assert flow_run["state"]["type"] in ("CRASHED", "FAILED")


def _flow_run_process(flow_run_id: str) -> int | None:
    """The process running flow run `flow_run_id` (its id is in its environment), if any."""
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if flow_run_id.encode() in (proc / "environ").read_bytes():
                return int(proc.name)
        except OSError:
            continue
    return None


def _parent(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1])


def test_a_run_started_while_mlflow_is_frozen_waits_then_its_killed_worker_comes_back(
    stack, mlflow_client, tmp_path
):
    """A deployment run created while the MLflow server is frozen waits for it and goes on.
    Its worker killed mid-run is back within 30 s on its own; the run ends (it completes, or
    it crashes with nothing registered), and `mnist doctor` leaves nothing RUNNING."""
    _, env, exports, _ = stack
    name = "worker-killed"
    config = {"model": "small", "epochs": 12, "train_limit": 8000, "test_limit": 1000}
    params = {"config": config | {"experiment": name, "registered_model": name}}
    with stopped(tree(_steady(env)["mlflow"].pid)):
        run_id = _deployment_run(stack, tmp_path, "mnist-training/mnist-train", params)
        process = wait_until(lambda: _flow_run_process(run_id), 120, 1)
        time.sleep(20)  # the run reaches MLflow and waits
    wait_until(lambda: _runs(mlflow_client, name), 120, 1)  # MLflow answered it
    workers = {p.pid: n for n, p in _pieces(env).items() if n.startswith("worker")}
    above = [process]
    while above[-1] > 1 and above[-1] not in workers:
        above.append(_parent(above[-1]))
    worker = workers[above[-1]]  # KeyError: no worker above the flow run's process
    seconds = _kill(stack, worker)
    ended = _wait_run(exports["PREFECT_API_URL"], run_id)["state"]
    print(f"\n{worker} back {seconds:.1f} s after kill -9; its run {ended['type']}: {ended}")
    versions = [v.version for v in mlflow_client.search_model_versions(f"name='{name}'")]
    assert (ended["type"], versions) in (("COMPLETED", ["1"]), ("CRASHED", []))
    doctor = subprocess.run(
        [str(BIN / "mnist"), "doctor"],
        env=_client(stack, tmp_path),
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert doctor.returncode == 0, doctor.stderr[-2000:]
    assert _run_of(mlflow_client, name).info.status in ("FINISHED", "FAILED")


def test_stack_down_stops_everything_and_a_restart_keeps_the_state(stack):
    _, env, exports, _ = stack
    mlflow_api = f"{exports['MLFLOW_TRACKING_URI']}/api/2.0/mlflow"
    auth = ("admin", PASSWORD)
    made = httpx.post(f"{mlflow_api}/experiments/create", json={"name": "survives"}, auth=auth)
    assert made.status_code == 200, made.text
    down = _stack(env, "down")
    assert down.returncode == 0 and "stack stopped" in down.stderr
    with pytest.raises(httpx.HTTPError):
        httpx.get(f"{exports['MLFLOW_TRACKING_URI']}/health", timeout=2)
    from app.stack import Stack, members

    assert members(Stack.from_env(env)) == []  # no process of the stack is left
    gone = _stack(env, "status")
    assert gone.returncode == 1 and gone.stderr.startswith("stack: error: no stack running")
    started = time.monotonic()
    again = _stack(env, "up")
    assert again.returncode == 0, again.stderr[-3000:]
    print(f"\nstack up again in {time.monotonic() - started:.1f} s (warm)")
    query = {"experiment_name": "survives"}
    kept = httpx.get(f"{mlflow_api}/experiments/get-by-name", params=query, auth=auth)
    assert kept.status_code == 200, kept.text  # PostgreSQL's data survived the restart
