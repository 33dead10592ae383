"""`mnist predict` and `mnist serve` on the suite's trained model: through its ONNX copy they
never import TensorFlow (checked in the process itself), `--runtime keras` gives the same
answers through Keras, and a model without a copy still predicts, through Keras."""

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import httpx
import numpy as np
import pytest
from PIL import Image

from app.cli import main
from tests.servers import free_port, start_server, stop_server

pytestmark = pytest.mark.slow  # the suite's trained model and real processes

BIN = Path(sys.executable).parent
PROBE = """
import contextlib, io, json, sys
from app.cli import main
for args in json.loads(sys.argv[1]):
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        rc = main(['predict', *args])
    heavy = sorted({'tensorflow', 'keras'} & set(sys.modules))
    print(json.dumps([rc, out.getvalue(), heavy]))
"""


@pytest.fixture(scope="module")
def model_dir(full_run, tmp_path_factory) -> Path:
    """The suite's full-MNIST model as a local MLflow model directory, with its ONNX copy."""
    from mlflow.artifacts import download_artifacts

    _, result = full_run
    where = tmp_path_factory.mktemp("model")
    path = Path(download_artifacts(result.model_uri, dst_path=str(where)))
    assert (path / "data" / "model.onnx").is_file(), sorted(path.rglob("*"))
    return path


@pytest.fixture(scope="module")
def keras_only(model_dir, tmp_path_factory) -> Path:
    """The same model directory without its ONNX copy, as a model logged before it had one."""
    path = tmp_path_factory.mktemp("keras-only") / "model"
    shutil.copytree(model_dir, path)
    (path / "data" / "model.onnx").unlink()
    return path


@pytest.fixture(scope="module")
def pngs(tmp_path_factory, mnist_data) -> tuple[list[str], np.ndarray]:
    folder = tmp_path_factory.mktemp("pngs")
    paths = []
    for i in range(10):
        paths.append(str(folder / f"test{i}.png"))
        Image.fromarray(mnist_data.test.images[i]).save(paths[-1])
    return paths, mnist_data.test.labels[:10]


def _table(text: str) -> tuple[list[int], np.ndarray]:
    rows = [line.split() for line in text.strip().splitlines()[1:]]
    return [int(r[1]) for r in rows], np.array([float(r[2]) for r in rows])


def test_predict_runs_the_copy_without_tensorflow_and_keras_agrees(full_run, model_dir, pngs):
    """One process: the registered model and the local directory through ONNX (TensorFlow not
    imported after either), then `--runtime keras` (now it is), with the same answers."""
    _, result = full_run
    paths, labels = pngs
    runs = [
        ["--model", result.model_uri, *paths],
        ["--model", str(model_dir), *paths],
        ["--model", str(model_dir), "--runtime", "keras", *paths],
    ]
    out = subprocess.run(
        [sys.executable, "-c", PROBE, json.dumps(runs)],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "MNIST_PREDICT_RUNTIME": "auto"},
    )
    assert out.returncode == 0, out.stderr
    (rc1, registered, heavy1), (rc2, local, heavy2), (rc3, keras, heavy3) = map(
        json.loads, out.stdout.strip().splitlines()
    )
    assert (rc1, rc2, rc3) == (0, 0, 0), out.stderr
    assert heavy1 == heavy2 == [], "the ONNX runtime imported TensorFlow or Keras"
    assert "tensorflow" in heavy3 and "keras" in heavy3
    digits, p_onnx = _table(local)
    assert _table(registered)[0] == digits
    assert np.mean(np.array(digits) == labels) >= 0.9
    keras_digits, p_keras = _table(keras)
    assert keras_digits == digits and np.abs(p_keras - p_onnx).max() <= 2e-4


def test_a_model_without_a_copy_predicts_through_keras(keras_only, pngs, capsys):
    paths, labels = pngs
    assert main(["predict", "--model", str(keras_only), *paths]) == 0  # auto: Keras
    digits, _ = _table(capsys.readouterr().out)
    assert np.mean(np.array(digits) == labels) >= 0.9
    assert main(["predict", "--model", str(keras_only), "--runtime", "onnx", *paths]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mnist: error: model {str(keras_only)!r} has no ONNX copy (it was logged without "
        "one); use --runtime keras"
    )


def test_serve_runs_the_copy_without_tensorflow(model_dir, mnist_data, tmp_path):
    """`mnist serve` of the local directory: /healthz, from the running server, says ONNX and
    no TensorFlow, before and after it answered real digits."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [str(BIN / "mnist"), "serve", "--model", str(model_dir), "--port", str(port)]
    options = ["--poll-seconds", "0", "--no-feedback", "--no-prediction-log"]
    proc = start_server([*command, *options], f"{base}/healthz", tmp_path / "serve.log", {})
    try:
        images, labels = mnist_data.test.images[:50], mnist_data.test.labels[:50]
        body = httpx.post(f"{base}/predict", json={"pixels": images.tolist()}).json()
        digits = [p["digit"] for p in body["predictions"]]
        assert np.mean(np.array(digits) == labels) >= 0.95
        health = httpx.get(f"{base}/healthz").json()
        assert (health["runtime"], health["tensorflow_loaded"]) == ("onnx", False)
    finally:
        stop_server(proc)
    assert "(runtime onnx)" in (tmp_path / "serve.log").read_text()
