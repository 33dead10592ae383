"""Fault injection on real processes and real stores: each test reproduces one way the pipeline
was broken (a crash, a hostile file or request, a sick store) and checks that it now holds."""

import os
import subprocess
import sys
import time
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

from app.cli import main
from mnist import models, registry
from mnist.tracking import Run, load_model
from tests.servers import free_port, start_server, stop_server

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


def _tamper(model_dir: Path, marker: Path) -> None:
    """Make an MLflow model directory ship a module that leaves `marker` when imported."""
    (model_dir / "code").mkdir()
    (model_dir / "code" / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    meta["flavors"]["tensorflow"]["code"] = "code"
    meta["flavors"]["tensorflow"]["keras_module"] = "evil"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta))


def test_a_model_directory_cannot_run_code(store, tmp_path, capsys):
    uri = _log_untrained()
    model_dir = Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(tmp_path / "m")))
    load_model(str(model_dir))  # as logged, it loads
    marker = tmp_path / "marker"
    _tamper(model_dir, marker)
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(tmp_path / "d.png")
    assert main(["predict", "--model", str(model_dir), str(tmp_path / "d.png")]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mnist: error: refusing model {str(model_dir)!r}: it ships code and names the module "
        "'evil'; only models logged by mnist-pipeline are loaded"
    )
    assert not marker.exists()


@pytest.mark.slow
def test_the_server_keeps_serving_when_the_champion_cannot_load(store, tmp_path, mnist_data):
    name = "refresh-fault"
    _log_untrained(name)
    registry.promote("1", name)
    port = free_port()
    proc = start_server(
        [str(BIN / "mnist"), "serve", "--model", f"models:/{name}@champion", "--port", str(port),
         "--poll-seconds", "0.5"],
        f"http://127.0.0.1:{port}/healthz", tmp_path / "serve.log", {},
    )  # fmt: skip
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


def test_serve_without_a_model_is_one_line(store, tmp_path):
    env = {**os.environ, "MLFLOW_TRACKING_URI": store}
    proc = subprocess.run(
        [str(BIN / "mnist"), "serve", "--model", "models:/nothing@champion", "--port", "0"],
        capture_output=True, text=True, env=env, cwd=tmp_path, timeout=300,
    )  # fmt: skip
    assert proc.returncode == 1
    assert proc.stderr.strip().splitlines() == [
        f"mnist: error: registered model 'nothing' does not exist in {store}: the registry is "
        "empty (train a model first)"
    ]
    assert "Traceback" not in proc.stdout + proc.stderr
