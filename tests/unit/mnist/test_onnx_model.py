"""`mnist.onnx_model` and `mnist.tracking.load_runner`: a Keras model's ONNX copy agrees with
it, a file that is not a digits model is refused in one line, and running a copy imports
neither TensorFlow nor Keras."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pytest

from mnist.errors import MnistError
from mnist.onnx_model import OnnxCheck, OnnxDigits, check, compare, export_onnx, make_copy
from mnist.tracking import check_logged_model, load_runner

if TYPE_CHECKING:
    import keras


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> tuple[keras.Model, Path, np.ndarray]:
    """A tiny raw-pixel Keras model (untrained), its checked ONNX copy, and images."""
    import keras

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [
            keras.Input((28, 28), name="pixels"),
            keras.layers.Rescaling(1 / 255),
            keras.layers.Reshape((28, 28, 1)),
            keras.layers.Conv2D(2, 3, activation="relu"),
            keras.layers.Flatten(),
            keras.layers.Dense(10, activation="softmax"),
        ]
    )
    images = np.random.default_rng(0).integers(0, 256, (64, 28, 28)).astype(np.float32)
    onnx, tags = make_copy(model, tmp_path_factory.mktemp("onnx"), images)
    assert onnx is not None, tags
    return model, onnx, images


@pytest.fixture(scope="module")
def model_dir(tiny, tmp_path_factory) -> Path:
    """An MLflow model directory as `Run.log_model` writes it, with the ONNX copy."""
    from mlflow.models import Model

    from mnist.tracking.model_files import KerasFlavour

    model, onnx, _ = tiny
    path = tmp_path_factory.mktemp("logged") / "model"
    KerasFlavour.save_model(
        str(path), Model(), model=model, pip_requirements=["keras"], onnx_file=onnx
    )
    return path


def _graph(path: Path, input_shape: list, output_shape: list, outputs: int = 1) -> Path:
    """A small ONNX graph with the given shapes (written with `onnx.helper`, no TensorFlow)."""
    import onnx
    from onnx import TensorProto, helper

    given = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    answers = [
        helper.make_tensor_value_info(f"y{i}", TensorProto.FLOAT, output_shape)
        for i in range(outputs)
    ]
    nodes = [helper.make_node("Identity", ["x"], [f"y{i}"]) for i in range(outputs)]
    model = helper.make_model(helper.make_graph(nodes, "g", [given], answers))
    onnx.save(model, str(path))
    return path


def test_the_copy_agrees_with_keras_and_says_so_in_its_tags(tiny):
    model, onnx, images = tiny
    result = check(OnnxDigits(onnx), model, images)
    assert result.passed and result.images == 64
    assert result.same_digit == 1.0 and result.max_abs_diff <= 1e-5
    tags = result.tags()
    assert tags["onnx"] == "yes" and tags["onnx_checked_on"] == "64"
    assert tags["onnx_same_digit"] == "1.0000" and float(tags["onnx_max_abs_diff"]) <= 1e-5


def test_a_copy_that_disagrees_fails_its_check_with_the_figures():
    keras_p = np.full((10_000, 10), 0.1, np.float32)
    keras_p[:, 3] = 0.2
    onnx_p = keras_p.copy()
    onnx_p[0] = [0.3, 0.0, 0.0, 0.2, 0, 0, 0, 0, 0.1, 0.1]  # one digit in 10,000 differs
    result = compare(onnx_p, keras_p)
    assert result.same_digit == 0.9999 and result.passed is False  # the diff is 0.2
    assert result.tags()["onnx"].startswith("no: the copy disagrees with Keras on 10000 images")
    assert compare(keras_p + 2e-4, keras_p).passed is False
    assert compare(keras_p + 5e-5, keras_p).passed is True
    assert not OnnxCheck(1.0, 0.0, 0).passed  # checked on nothing: not checked


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (lambda good: good[: len(good) // 2], "not a valid ONNX model (7 : INVALID_PROTOBUF"),
        (lambda good: b"not an onnx file\n" * 10, "not a valid ONNX model"),
        (lambda good: b"", "not a valid ONNX model"),
    ],
    ids=["truncated", "garbage", "empty"],
)
def test_a_damaged_file_is_one_line(tiny, tmp_path, content, message):
    _, onnx, _ = tiny
    path = tmp_path / "model.onnx"
    path.write_bytes(content(onnx.read_bytes()))
    with pytest.raises(MnistError) as caught:
        OnnxDigits(path)
    text = str(caught.value)
    assert text.startswith(f"cannot load ONNX model {str(path)!r}: {message}")
    assert "\n" not in text


@pytest.mark.parametrize(
    ("shapes", "message"),
    [
        (([None, 32, 32], [None, 10]), "takes tensor(float) [N, 32, 32]"),
        ((["n", 784], ["n", 10]), "takes tensor(float) [N, 784]"),
        (([None, 28, 28], [None, 28, 28]), "answers [N, 28, 28]"),
        (([None, 28, 28], [None, 10], 2), "has 1 input(s) and 2 output(s)"),
    ],
    ids=["32x32 input", "flat input", "image output", "two outputs"],
)
def test_a_graph_of_the_wrong_shape_is_one_line(tmp_path, shapes, message):
    path = _graph(tmp_path / "other.onnx", *shapes)
    with pytest.raises(MnistError) as caught:
        OnnxDigits(path)
    assert str(caught.value).startswith(f"ONNX model {str(path)!r} {message}")
    assert "\n" not in str(caught.value)


def test_a_model_whose_copy_is_not_a_digits_model_is_logged_without_one(tmp_path):
    """Built on its first call, this model answers (N, 28, 10): its copy is refused, no file
    is left, and the tag says why in one line."""
    import keras

    model = keras.Sequential([keras.layers.Dense(10)])
    onnx, tags = make_copy(model, tmp_path, np.zeros((2, 28, 28), np.float32))
    assert onnx is None and tags == {
        "onnx": f"no: ONNX model {str(tmp_path / 'model.onnx')!r} answers [N, N, 10]; "
        "a digits model answers [N, 10]"
    }
    assert not list(tmp_path.iterdir())


class _Unexportable:
    """A model whose export fails as tf2onnx does on an op it cannot convert."""

    _called = True

    def export(self, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("Unsupported ops: Counter({'PyFunc': 1})\nmore detail")


def test_a_failed_export_is_one_line_and_leaves_no_file(tmp_path):
    with pytest.raises(MnistError) as caught:
        export_onnx(_Unexportable(), tmp_path / "model.onnx")  # pyright: ignore[reportArgumentType]
    assert str(caught.value) == (
        "ONNX export failed: RuntimeError: Unsupported ops: Counter({'PyFunc': 1})"
    )
    assert not list(tmp_path.iterdir())


def test_the_runtime_is_the_copy_when_there_is_one(tiny, model_dir, tmp_path):
    model, onnx, images = tiny
    expected = np.asarray(model(images))
    auto = load_runner(str(model_dir))
    assert auto.runtime == "onnx"
    np.testing.assert_allclose(auto.probabilities(images), expected, atol=1e-5)
    assert auto.keras_model().count_params() == model.count_params()
    by_keras = load_runner(str(model_dir), "keras")
    assert by_keras.runtime == "keras"
    np.testing.assert_allclose(by_keras.probabilities(images), expected, atol=1e-5)
    bare = load_runner(str(onnx))
    assert bare.runtime == "onnx" and bare.probabilities(images[:2]).shape == (2, 10)
    with pytest.raises(MnistError, match="is an ONNX file: it has no Keras model"):
        bare.keras_model()
    with pytest.raises(MnistError, match="it runs only with ONNX Runtime"):
        load_runner(str(onnx), "keras")
    with pytest.raises(MnistError, match="unknown runtime 'tflite'"):
        load_runner(str(model_dir), "tflite")


def test_a_model_without_a_copy_runs_through_keras(model_dir, tmp_path):
    import shutil

    plain = Path(shutil.copytree(model_dir, tmp_path / "plain"))
    (plain / "data" / "model.onnx").unlink()
    assert load_runner(str(plain)).runtime == "keras"
    with pytest.raises(MnistError) as caught:
        load_runner(str(plain), "onnx")
    assert str(caught.value) == (
        f"model {str(plain)!r} has no ONNX copy (it was logged without one); use --runtime keras"
    )


def test_a_damaged_copy_in_a_model_directory_is_one_line(model_dir, tmp_path):
    import shutil

    damaged = Path(shutil.copytree(model_dir, tmp_path / "damaged"))
    copy = damaged / "data" / "model.onnx"
    copy.write_bytes(copy.read_bytes()[:100])
    with pytest.raises(MnistError) as caught:
        load_runner(str(damaged))
    assert str(caught.value).startswith(f"model {str(damaged)!r}: cannot load ONNX model ")
    assert load_runner(str(damaged), "keras").runtime == "keras"


def test_a_linked_copy_is_refused(model_dir, tmp_path):
    import shutil

    linked = Path(shutil.copytree(model_dir, tmp_path / "linked"))
    copy = linked / "data" / "model.onnx"
    target = tmp_path / "elsewhere.onnx"
    copy.rename(target)
    copy.symlink_to(target)
    with pytest.raises(MnistError, match="it holds an ONNX copy that is not a plain file"):
        check_logged_model(linked, "m")


def test_mlflow_pyfunc_answers_with_the_copy(model_dir, tiny):
    import mlflow.pyfunc

    model, _, images = tiny
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    assert type(pyfunc.get_raw_model()).__name__ == "InferenceSession"
    expected = np.asarray(model(images))
    np.testing.assert_allclose(pyfunc.predict(images), expected, atol=1e-5)


def test_running_a_copy_imports_neither_tensorflow_nor_keras_nor_mlflow(model_dir):
    """Checked in a process of its own: a model directory, audited and run by ONNX Runtime."""
    code = (
        "import sys, numpy as np\n"
        "from mnist.tracking import load_runner\n"
        f"runner = load_runner({str(model_dir)!r})\n"
        "assert runner.runtime == 'onnx'\n"
        "assert runner.probabilities(np.zeros((3, 28, 28), np.float32)).shape == (3, 10)\n"
        "loaded = [m for m in ('tensorflow', 'keras', 'mlflow') if m in sys.modules]\n"
        "assert not loaded, loaded\n"
    )
    env = {**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[3])}
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60
    )
    assert done.returncode == 0, done.stderr
