"""Fault injection on real `mnist` processes and real stores: each test reproduces one way the
pipeline was broken (a crash, a signal, kill -9, a hostile request, a sick store, a full disk)
and checks that it now holds."""

import os
import signal
import socket
import sqlite3
import struct
import subprocess
import sys
import time
import zlib
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest

from mnist import models, registry
from mnist.tracking import Run
from tests.conftest import ROOT, tracking_store
from tests.servers import ahead, free_port, start_server, stop_server

BIN = Path(sys.executable).parent


def _log_untrained(name: str | None = None) -> str:
    """A real logged model (an untrained `small` net): seconds, not a training run."""
    run = Run.start("faults", "untrained", {})
    uri = run.log_model(models.for_raw_pixels(models.build("small")), np.zeros((2, 28, 28)))
    run.end(True)
    if name:
        registry.register(uri, run.run_id, {}, name)
    return uri


class _NotKeras(mlflow.pyfunc.PythonModel):
    def predict(self, context, model_input):
        return model_input


@pytest.mark.slow
def test_the_server_keeps_serving_when_the_champion_cannot_load(store, tmp_path, mnist_data):
    name = "refresh-fault"
    _log_untrained(name)
    registry.promote("1", name)
    port = free_port()
    proc = start_server(
        [
            str(BIN / "mnist"),
            "serve",
            "--model",
            f"models:/{name}@champion",
            "--port",
            str(port),
            "--poll-seconds",
            "0.5",
        ],
        f"http://127.0.0.1:{port}/healthz",
        tmp_path / "serve.log",
        {},
    )
    api = f"http://127.0.0.1:{port}"

    def health_until(status: str) -> dict:
        deadline = time.monotonic() + 60
        while (health := httpx.get(f"{api}/healthz").json())["status"] != status:
            assert time.monotonic() < deadline, health
            time.sleep(0.3)
        return health

    try:
        # v2 has no TensorFlow flavour (what crashed the refresher for good).
        with mlflow.start_run():
            info = mlflow.pyfunc.log_model(name="model", python_model=_NotKeras())
        mlflow.register_model(info.model_uri, name)
        registry.promote("2", name)
        health = health_until("degraded")
        assert health["version"] == "1" and "has no TensorFlow flavour" in health["refresh_error"]
        pixels = {"pixels": mnist_data.test.images[:1].tolist()}
        assert httpx.post(f"{api}/predict", json=pixels).json()["model"]["version"] == "1"
        reload = httpx.post(f"{api}/reload")
        assert reload.status_code == 503 and "still serving version 1" in reload.json()["error"]
        # Polling went on: the next move is picked up.
        _log_untrained(name)
        registry.promote("3", name)
        assert health_until("ok")["version"] == "3"
    finally:
        stop_server(proc)


@pytest.mark.slow  # a process of its own
def test_serve_without_a_model_is_one_line(store, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    proc = subprocess.run(
        [str(BIN / "mnist"), "serve", "--model", "models:/nothing@champion", "--port", "0"],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=300,
    )
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"mnist: error: registered model 'nothing' does not exist in {store}: the registry is "
        "empty (train a model first)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr


def _png_header(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height pixels, with a few bytes of image data: what
    a decompression bomb looks like before it is decoded."""

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0)
    idat = zlib.compress(b"\x00" * 1000)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", idat) + chunk(b"IEND", b"")


@pytest.fixture(scope="module")
def hostile_api(tmp_path_factory):
    """A real `mnist serve` (2 MB body limit) of a real logged model, in its own store, taking
    feedback as fast as a fuzzer sends it (so that it tests storing, not the limit)."""
    root = tmp_path_factory.mktemp("hostile")
    with tracking_store(root) as uri:
        model_uri = _log_untrained()
    port = free_port()
    proc = start_server(
        [
            str(BIN / "mnist"),
            "serve",
            "--model",
            model_uri,
            "--port",
            str(port),
            "--poll-seconds",
            "0",
            "--max-bytes",
            "2000000",
            "--feedback-per-minute",
            "1000000",
        ],
        f"http://127.0.0.1:{port}/healthz",
        root / "serve.log",
        {"MLFLOW_TRACKING_URI": uri},
    )
    yield f"http://127.0.0.1:{port}", proc
    stop_server(proc)


def _rss_mb(pid: int) -> float:
    status = Path(f"/proc/{pid}/status").read_text()
    return (
        int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmRSS")))
        / 1024
    )


@pytest.mark.slow
@pytest.mark.parametrize(
    ("what", "request_", "status", "message"),
    [
        (
            "multipart over the byte limit",
            dict(files={"file": ("big.png", b"\x00" * 3_000_000, "image/png")}),
            413,
            "exceeds the 2000000-byte limit",
        ),
        (
            "decompression bomb PNG",
            dict(content=_png_header(20_000, 20_000), headers={"Content-Type": "image/png"}),
            413,
            "(400000000 pixels) exceeds limit of 32000000 pixels",
        ),
        (
            "bomb PNG in multipart",
            dict(files={"file": ("b.png", _png_header(5_000, 5_000), "image/png")}),
            413,
            "5000 x 5000 pixels exceeds the limit of 16,000,000",
        ),
        (
            "deeply nested JSON",
            dict(
                content=b"[" * 100_000 + b"]" * 100_000,
                headers={"Content-Type": "application/json"},
            ),
            400,
            "nested too deeply",
        ),
        (
            "malformed multipart",
            dict(
                content=b"--x\r\nnonsense",
                headers={"Content-Type": "multipart/form-data; boundary=x"},
            ),
            400,
            "multipart",
        ),
    ],
    ids=lambda v: v if isinstance(v, str) else "",
)
def test_hostile_requests_get_a_4xx_in_bounded_memory(hostile_api, what, request_, status, message):
    api, proc = hostile_api
    before = _rss_mb(proc.pid)
    response = httpx.post(f"{api}/predict", timeout=60, **request_)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert _rss_mb(proc.pid) - before < 100  # nothing was read or decoded whole
    assert httpx.get(f"{api}/healthz").json()["status"] == "ok"


KILL_AFTER_THE_MOVE = """
import os, signal, sys
from mnist import registry
registry.record = lambda *a, **k: os.kill(os.getpid(), signal.SIGKILL)  # dies right here
registry.promote(sys.argv[1], sys.argv[2], "promoted just before a crash")
"""


@pytest.mark.slow  # a process of its own
def test_rollback_after_a_crash_between_moving_the_alias_and_recording_it(store, tmp_path):
    name = "crash-test"
    for _ in range(2):
        _log_untrained(name)
    registry.promote("1", name)
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    proc = subprocess.run(
        [sys.executable, "-c", KILL_AFTER_THE_MOVE, "2", name],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        timeout=120,
    )
    assert proc.returncode == -9  # killed after moving the alias, before recording the move
    assert registry.champion(name).version == "2"
    assert registry.history(name)["version"].tolist() == ["1"]
    assert registry.rollback(name).version == "1"  # knows whom v2 replaced, from its tags
    events = registry.history(name)
    assert events["action"].tolist() == ["promote", "promote", "rollback"]
    assert events["version"].tolist() == ["1", "2", "1"]
    assert "recorded after a crash" in events["reason"].iloc[1]


FIRST_RUN = """
import sys, time
from pathlib import Path
from mnist.tracking import Run  # imported first: the two processes then start together
Path(sys.argv[1]).touch()
while not Path(sys.argv[2]).exists():
    time.sleep(0.005)
Run.start("first", "race", {}).end(True)
print("ok")
"""


@pytest.mark.slow
@pytest.mark.parametrize("attempt", range(3))
def test_two_first_runs_on_a_new_store(tmp_path, attempt):
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    ready, go = [tmp_path / f"ready{i}" for i in range(2)], tmp_path / "go"
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", FIRST_RUN, str(r), str(go)],
            env=env,
            cwd=tmp_path,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for r in ready
    ]
    deadline = time.monotonic() + 120
    while not all(r.exists() for r in ready) and time.monotonic() < deadline:
        time.sleep(0.01)
    go.touch()
    outs = [p.communicate(timeout=120) for p in procs]
    assert [p.returncode for p in procs] == [0, 0], outs
    client = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert len(client.search_runs([client.get_experiment_by_name("first").experiment_id])) == 2


@pytest.mark.slow
def test_a_server_that_never_answers_fails_in_bounded_time(tmp_path):
    with socket.socket() as silent:  # accepts connections (the backlog), never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen(8)
        env = {**os.environ, "MLFLOW_TRACKING_URI": f"http://127.0.0.1:{silent.getsockname()[1]}"}
        for key in ("MLFLOW_HTTP_REQUEST_TIMEOUT", "MLFLOW_HTTP_REQUEST_MAX_RETRIES"):
            env.pop(key, None)  # the project's defaults (mnist/env.py)
        env.pop("MNIST_CONNECT_SECONDS", None)  # 5 s: the first contact's check
        started = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "mnist"), "registry", "list"],
            env=env,
            cwd=tmp_path,
            capture_output=True,
            text=True,
            timeout=300,
        )
        took = time.monotonic() - started
    assert proc.returncode == 1 and took < 20, (took, proc.stderr)
    uri = env["MLFLOW_TRACKING_URI"]
    assert proc.stderr.strip() == (
        f"mnist: error: MLFLOW_TRACKING_URI={uri}: {uri.removeprefix('http://')} did not answer "
        "within 5 s; check the host, the port, the server and any firewall, or correct "
        "MLFLOW_TRACKING_URI"
    )


@pytest.mark.slow  # a process of its own
def test_a_corrupt_store_is_one_line(tmp_path):
    (tmp_path / "mlflow.db").write_bytes(b"SQLite format 3\x00" + bytes(range(256)) * 40)
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}"}
    proc = subprocess.run(
        [str(BIN / "mnist"), "registry", "list"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 1, proc.stderr
    (line,) = proc.stderr.strip().splitlines()
    assert line.startswith(f"mnist: error: MLflow store {env['MLFLOW_TRACKING_URI']} cannot be ")


def _start_training(tmp_path: Path, mnist_path: Path) -> subprocess.Popen:
    """`mnist train --profile fast` in a session of its own, as a terminal or a service
    manager starts it, with its own stores; returns once the epochs have begun."""
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "MNIST_DATA_DIR": str(mnist_path),
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [str(BIN / "mnist"), "train", "--profile", "fast"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    for line in proc.stdout:
        if "training small for 2 epochs" in line:
            time.sleep(1)
            return proc
    raise AssertionError(f"training never started (exit {proc.wait()})")


def _api_servers_of(pid: int) -> list[int]:
    """Temporary Prefect API servers started by process `pid` that still run."""
    found = []
    for entry in Path("/proc").iterdir():
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"flows.temporary_api_child" in argv and str(pid).encode() in argv:
            found.append(int(entry.name))
    return found


def _states(tmp_path: Path) -> tuple[list[str], list[str]]:
    """MLflow run statuses and Prefect flow run states, read from the stores' databases."""
    runs = mlflow.MlflowClient(f"sqlite:///{tmp_path / 'mlflow.db'}").search_runs(["1"])
    with sqlite3.connect(tmp_path / "prefect" / "prefect.db") as db:
        flows = [row[0] for row in db.execute("SELECT state_type FROM flow_run")]
    return [r.info.status for r in runs], flows


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_end_a_training_in_seconds(tmp_path, mnist_path, sig, code):
    proc = _start_training(tmp_path, mnist_path)
    ahead(proc.pid)  # its stop is timed, not the other test processes' work (ADR 0100)
    started = time.monotonic()
    os.killpg(proc.pid, sig)  # the whole process group, as a terminal or systemd does
    rest = proc.communicate(timeout=120)[0]
    took = time.monotonic() - started
    assert proc.returncode == code, rest
    assert took < 15, rest
    assert "mnist: interrupted" in rest.splitlines()[-3:] and "Traceback" not in rest, rest
    assert _api_servers_of(proc.pid) == []
    mlflow_runs, flow_runs = _states(tmp_path)
    assert mlflow_runs == ["FAILED"] and flow_runs == ["CRASHED"]


@pytest.mark.slow
@pytest.mark.parametrize(("sig", "code"), [(signal.SIGINT, 130), (signal.SIGTERM, 143)])
def test_ctrl_c_and_sigterm_stop_the_server_in_one_line(store, tmp_path, sig, code):
    uri, port, log = _log_untrained(), free_port(), tmp_path / "serve.log"
    command = [str(BIN / "mnist"), "serve", "--model", uri, "--port", str(port)]
    proc = start_server(command, f"http://127.0.0.1:{port}/healthz", log, {})
    started = time.monotonic()
    os.killpg(proc.pid, sig)  # after uvicorn's graceful stop, the signal reaches `main`
    proc.wait(timeout=30)
    output = log.read_text()
    assert proc.returncode == code, output
    assert time.monotonic() - started < 10, output
    assert output.strip().splitlines()[-1] == "mnist: interrupted" and "Traceback" not in output


@pytest.mark.slow
def test_kill_9_leaves_no_orphan_and_doctor_closes_the_runs(tmp_path, mnist_path):
    proc = _start_training(tmp_path, mnist_path)
    server = _api_servers_of(proc.pid)
    assert len(server) == 1
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while _api_servers_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _api_servers_of(proc.pid) == []  # the temporary API died with its parent
    assert _states(tmp_path) == (["RUNNING"], ["RUNNING"])
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PREFECT_HOME": str(tmp_path / "prefect"),
    }
    env.pop("PREFECT_API_URL", None)
    doctor = subprocess.run(
        [str(BIN / "mnist"), "doctor"],
        env=env,
        cwd=tmp_path,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert doctor.returncode == 0, doctor.stderr
    assert f"its process {proc.pid} is gone" in doctor.stdout
    assert "marked CRASHED: Prefect flow run" in doctor.stdout
    assert _states(tmp_path) == (["FAILED"], ["CRASHED"])


@pytest.fixture
def small_disk(tmp_path):
    """A 1.6 MB filesystem (tmpfs): room for a store and a run's plots, not for its model."""
    path = tmp_path / "disk"
    path.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1600k", "tmpfs", str(path)], check=True)
    yield path
    subprocess.run(["umount", "--lazy", str(path)], check=True)  # our client may hold the db


@pytest.mark.slow
def test_a_full_disk_while_logging_the_model_is_one_line_and_leaves_nothing(
    small_disk, mnist_path, prefect_api_url
):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{small_disk / 'mlflow.db'}",
        "PREFECT_HOME": str(small_disk.parent / "prefect"),
        "PREFECT_API_URL": prefect_api_url,  # the session's: no temporary API to start
        "MNIST_DATA_DIR": str(mnist_path),
    }
    proc = subprocess.run(
        [
            str(BIN / "mnist"),
            "train",
            "--profile",
            "fast",
            "--epochs",
            "1",
            "--train-limit",
            "2000",
            "--test-limit",
            "500",
        ],
        env=env,
        cwd=small_disk,
        capture_output=True,
        text=True,
        timeout=600,
    )
    out = proc.stdout + proc.stderr
    assert proc.returncode == 1, out
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mnist: error:")]
    assert len(errors) == 1 and "cannot log the model" in errors[0], out
    assert "disk is full" in errors[0] or "No space left" in errors[0]
    assert "Traceback" not in out
    assert list(small_disk.glob("mlruns/*/models/*/artifacts/**/*")) == []
    (run,) = mlflow.MlflowClient(env["MLFLOW_TRACKING_URI"]).search_runs(["1"])
    assert run.info.status == "FAILED"


@pytest.mark.slow
def test_the_api_keeps_its_openapi_document_under_schemathesis(hostile_api, tmp_path):
    """Property-based requests from the OpenAPI document (every check; the two adjustments are
    explained in tests/schemathesis.toml): no 5xx, every status code and body documented."""
    api, _ = hostile_api
    config = ROOT / "tests" / "schemathesis.toml"
    proc = subprocess.run(
        [
            str(BIN / "schemathesis"),
            "--config-file",
            str(config),
            "run",
            f"{api}/openapi.json",
            "--max-time",
            "40",
            "--seed",
            "1",
        ],
        capture_output=True,
        text=True,
        timeout=600,
        cwd=tmp_path,
    )
    failures = proc.stdout[proc.stdout.find("FAILURES") :]
    assert proc.returncode == 0, failures[:6000]
    assert "Failures:" not in proc.stdout


@pytest.mark.slow
def test_a_read_only_store_reads_and_refuses_a_run_in_one_line(
    small_disk, mnist_path, prefect_api_url
):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{small_disk / 'mlflow.db'}",
        "PREFECT_HOME": str(small_disk.parent / "prefect"),
        "PREFECT_API_URL": prefect_api_url,  # the session's: no temporary API to start
        "MNIST_DATA_DIR": str(mnist_path),
    }

    def mnist(*args: str) -> subprocess.CompletedProcess:
        return subprocess.run(
            [str(BIN / "mnist"), *args],
            env=env,
            cwd=small_disk.parent,
            capture_output=True,
            text=True,
            timeout=600,
        )

    assert "the registry is empty" in mnist("registry", "list").stderr  # creates the store
    subprocess.run(["mount", "-o", "remount,ro", str(small_disk)], check=True)
    listed = mnist("registry", "list")
    assert listed.stderr.strip().endswith("the registry is empty (train a model first)")
    trained = mnist("train", "--profile", "fast", "--train-limit", "500", "--test-limit", "100")
    assert trained.returncode == 1 and "Traceback" not in trained.stdout + trained.stderr
    errors = [line for line in trained.stderr.splitlines() if line.startswith("mnist: error:")]
    assert errors == [
        f"mnist: error: MLflow at {env['MLFLOW_TRACKING_URI']}: (sqlite3."
        "OperationalError) attempt to write a readonly database"
    ]


@pytest.mark.slow
def test_kill_9_of_the_monitor_leaves_no_run_running(store, tmp_path, mnist_data):
    from datetime import UTC, datetime

    from mnist.datastore import Logged, PredictionLog, Store, new_ids

    name = "monitor-fault"
    _log_untrained(name)
    registry.promote("1", name)
    data = f"sqlite:///{tmp_path / 'data.db'}"
    now, images = datetime.now(UTC), mnist_data.test.images[:300]
    rows = [
        Logged(i, now, "1", 0, 0.5, 1, 0.4, image.tobytes(), True)
        for i, image in zip(new_ids(300, now), images, strict=True)
    ]
    PredictionLog(Store(data)).write(rows)
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": store,
        "PREFECT_HOME": str(tmp_path / "prefect"),
        "MNIST_DATASTORE": data,
        "MNIST_REGISTERED_MODEL": name,
    }
    env.pop("PREFECT_API_URL", None)
    proc = subprocess.Popen(
        [str(BIN / "mnist"), "monitor", "--last", "300"],
        env=env,
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    client = mlflow.MlflowClient(store)

    def running() -> list:
        found = client.get_experiment_by_name("mnist-monitoring")
        if found is None:
            return []
        return client.search_runs([found.experiment_id], "attributes.status = 'RUNNING'")

    deadline = time.monotonic() + 180
    while not (open_runs := running()):
        assert proc.poll() is None, "the monitor ended before its run could be killed"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    deadline = time.monotonic() + 15
    while _api_servers_of(proc.pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert _api_servers_of(proc.pid) == []  # the temporary API died with its parent
    assert [r.info.status for r in running()] == ["RUNNING"]
    doctor = subprocess.run(
        [str(BIN / "mnist"), "doctor"], env=env, cwd=tmp_path, capture_output=True, text=True
    )
    assert doctor.returncode == 0, doctor.stderr
    assert client.get_run(open_runs[0].info.run_id).info.status == "FAILED", doctor.stdout
