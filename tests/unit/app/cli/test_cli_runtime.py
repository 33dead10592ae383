"""`mnist predict --runtime`: a bare ONNX digits model (written with `onnx.helper`, no
TensorFlow) predicts without importing TensorFlow, Keras or MLflow; a runtime it cannot use is
one line."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from app.cli import main


@pytest.fixture(scope="module")
def sevens(tmp_path_factory) -> Path:
    """An ONNX digits model, [N, 28, 28] -> [N, 10], that answers 7 for any image with ink."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    weights = np.zeros((784, 10), np.float32)
    weights[:, 7] = 1.0
    graph = helper.make_graph(
        [
            helper.make_node("Reshape", ["pixels", "flat"], ["rows"]),
            helper.make_node("MatMul", ["rows", "w"], ["logits"]),
            helper.make_node("Softmax", ["logits"], ["probabilities"], axis=1),
        ],
        "sevens",
        [helper.make_tensor_value_info("pixels", TensorProto.FLOAT, ["N", 28, 28])],
        [helper.make_tensor_value_info("probabilities", TensorProto.FLOAT, ["N", 10])],
        [
            numpy_helper.from_array(np.array([-1, 784], np.int64), "flat"),
            numpy_helper.from_array(weights, "w"),
        ],
    )
    path = tmp_path_factory.mktemp("onnx") / "sevens.onnx"
    onnx.save(helper.make_model(graph), str(path))
    return path


@pytest.fixture(scope="module")
def png(tmp_path_factory) -> Path:
    path = tmp_path_factory.mktemp("png") / "digit.png"
    pixels = np.zeros((28, 28), np.uint8)
    pixels[4:24, 14] = 255
    Image.fromarray(pixels).save(path)
    return path


def test_predict_with_an_onnx_model_imports_no_tensorflow_keras_or_mlflow(sevens, png):
    probe = (
        "import sys\n"
        "from app.cli import main\n"
        f"rc = main(['predict', '--model', {str(sevens)!r}, {str(png)!r}])\n"
        "print(rc, sorted({'tensorflow', 'keras', 'mlflow'} & set(sys.modules)))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        timeout=120,
        env={**os.environ, "MNIST_PREDICT_RUNTIME": "onnx"},
    )
    table, verdict = out.stdout.strip().splitlines()[-2:]
    assert table.split()[:2] == [str(png), "7"], out.stdout + out.stderr
    assert verdict == "0 []", out.stderr


def test_a_bare_onnx_file_cannot_run_through_keras(sevens, png, capsys):
    assert main(["predict", "--model", str(sevens), "--runtime", "keras", str(png)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mnist: error: model {str(sevens)!r} is an ONNX file: it runs only with ONNX Runtime"
    )


def test_an_unknown_runtime_is_a_usage_error(sevens, png, capsys):
    assert main(["predict", "--model", str(sevens), "--runtime", "tflite", str(png)]) == 2
    err = capsys.readouterr().err.strip()
    assert "--runtime: Input should be 'auto', 'onnx' or 'keras'" in err and "\n" not in err
