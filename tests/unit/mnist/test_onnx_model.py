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


def _graph(
    path: Path, input_shape: list, output_shape: list, outputs: int = 1, answer: str = "FLOAT"
) -> Path:
    """A small ONNX graph with the given declared shapes (written with `onnx.helper`, no
    TensorFlow): each output is the input itself, or for another type than FLOAT, the first
    ten pixels of its first row cast to `answer`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    kind = getattr(TensorProto, answer)
    given = helper.make_tensor_value_info("x", TensorProto.FLOAT, input_shape)
    answers = [helper.make_tensor_value_info(f"y{i}", kind, output_shape) for i in range(outputs)]
    constants = [
        numpy_helper.from_array(np.array(values, np.int64), name)
        for name, values in (("starts", [0, 0]), ("ends", [1, 10]), ("axes", [1, 2]), ("one", [1]))
    ]
    nodes = [helper.make_node("Identity", ["x"], [f"y{i}"]) for i in range(outputs)]
    if answer != "FLOAT":
        nodes = [
            helper.make_node("Slice", ["x", "starts", "ends", "axes"], ["row"]),
            helper.make_node("Squeeze", ["row", "one"], ["ten"]),
            *[helper.make_node("Cast", ["ten"], [f"y{i}"], to=kind) for i in range(outputs)],
        ]
    graph = helper.make_graph(nodes, "g", [given], answers, constants)
    onnx.save(helper.make_model(graph), str(path))
    return path


def _reshaping(path: Path) -> Path:
    """A graph declared [N, 28, 28] -> [N, 10] that reshapes its pixels to (-1, 10)."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    given = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 28, 28])
    answer = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 10])
    shape = numpy_helper.from_array(np.array([-1, 10], np.int64), "shape")
    node = helper.make_node("Reshape", ["x", "shape"], ["y"])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [given], [answer], [shape])), path)
    return path


def _external(path: Path, location: str) -> Path:
    """A graph (x * w) whose initializer `w` is stored in the external file `location`."""
    import onnx
    from onnx import TensorProto, helper, numpy_helper

    w = numpy_helper.from_array(np.ones((28, 28), np.float32), "w")
    w.ClearField("raw_data")
    w.data_location = TensorProto.EXTERNAL
    for key, value in (("location", location), ("offset", "0"), ("length", str(28 * 28 * 4))):
        entry = w.external_data.add()
        entry.key, entry.value = key, value
    x = helper.make_tensor_value_info("x", TensorProto.FLOAT, [None, 28, 28])
    y = helper.make_tensor_value_info("y", TensorProto.FLOAT, [None, 28, 28])
    node = helper.make_node("Mul", ["x", "w"], ["y"])
    onnx.save(helper.make_model(helper.make_graph([node], "g", [x], [y], [w])), str(path))
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
        (([1, 28, 28], [1, 10]), "takes tensor(float) [1, 28, 28]"),
        (([None, 28, 28], [None, 28, 28]), "answers tensor(float) [N, 28, 28]"),
        (([None, 28, 28], [None, 10], 2), "has 1 input(s) and 2 output(s)"),
        (([None, 28, 28], [None, 10], 1, "STRING"), "answers tensor(string) [N, 10]"),
        (([None, 28, 28], [None, 10], 1, "BOOL"), "answers tensor(bool) [N, 10]"),
    ],
    ids=[
        "32x32 input",
        "flat input",
        "fixed batch",
        "image output",
        "two outputs",
        "string output",
        "bool output",
    ],
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
        "onnx": f"no: ONNX model {str(tmp_path / 'model.onnx')!r} answers tensor(float) "
        "[N, N, 10]; a digits model answers tensor(float) [N, 10]"
    }
    assert not list(tmp_path.iterdir())


class _Unexportable:
    """A model whose export fails as tf2onnx does on an op it cannot convert."""

    _called = True

    def export(self, path: str, **kwargs: object) -> None:
        Path(path).write_bytes(b"half")
        raise RuntimeError("Unsupported ops: Counter({'PyFunc': 1})\nmore detail")


def test_a_graph_that_fails_when_run_is_one_line(tmp_path):
    """Declared [N, 10], it reshapes N * 784 pixels to (-1, 10): ONNX Runtime fails on one
    image, and five answer (392, 10); `probabilities` says so in one MnistError each."""
    path = _reshaping(tmp_path / "liar.onnx")
    digits = OnnxDigits(path)
    with pytest.raises(MnistError) as caught:
        digits.probabilities(np.zeros((1, 28, 28), np.float32))
    assert str(caught.value).startswith(f"ONNX model {str(path)!r} failed to run: ")
    assert "\n" not in str(caught.value)
    with pytest.raises(MnistError) as caught:
        digits.probabilities(np.zeros((5, 28, 28), np.float32))
    assert str(caught.value) == (
        f"ONNX model {str(path)!r} failed to run: it answered (392, 10) for 5 image(s)"
    )


@pytest.mark.parametrize("location", ["cwdweights.bin", "../work/cwdweights.bin"])
def test_a_graph_with_tensors_in_external_files_is_refused(tmp_path, monkeypatch, location):
    """ONNX Runtime reads external data of a model given as bytes from the working directory:
    a file planted there must not become the model's weights."""

    from mnist import mnist_pyfunc

    work = tmp_path / "work"
    work.mkdir()
    np.full((28, 28), 7, np.float32).tofile(work / "cwdweights.bin")
    monkeypatch.chdir(work)
    path = _external(tmp_path / "model.onnx", location)
    with pytest.raises(MnistError) as caught:
        OnnxDigits(path)
    text = str(caught.value)
    assert text.startswith(f"ONNX model {str(path)!r} stores tensors in external files (")
    assert text.endswith("): refused") and "\n" not in text
    with pytest.raises(Exception, match="External data path"):
        mnist_pyfunc.onnx_session(path.read_bytes())


def test_the_pyfunc_loader_warns_and_answers_with_keras_when_the_copy_cannot_run(
    model_dir, tmp_path, monkeypatch, caplog
):
    import logging
    import shutil

    from mnist import mnist_pyfunc

    data = Path(shutil.copytree(model_dir / "data", tmp_path / "data"))
    np.full((28, 28), 7, np.float32).tofile(tmp_path / "cwdweights.bin")
    monkeypatch.chdir(tmp_path)
    _external(data / "model.onnx", "cwdweights.bin")
    with caplog.at_level(logging.WARNING):
        loaded = mnist_pyfunc._load_pyfunc(str(data))
    assert type(loaded) is mnist_pyfunc.KerasDigits
    assert "the ONNX copy" in caplog.text and "answering through Keras" in caplog.text


def test_any_failure_of_the_export_or_check_costs_only_the_copy(tmp_path, monkeypatch):
    """Not only our own errors: a library's (here a RuntimeError) leaves no file and says why."""
    import mnist.onnx_model

    def broken(model: object, path: Path) -> Path:
        path.write_bytes(b"half")
        raise RuntimeError("converter crashed\nsecond line")

    monkeypatch.setattr(mnist.onnx_model, "export_onnx", broken)
    onnx, tags = make_copy(object(), tmp_path, np.zeros((2, 28, 28), np.float32))  # pyright: ignore[reportArgumentType]
    assert onnx is None and tags == {"onnx": "no: RuntimeError: converter crashed"}
    assert not list(tmp_path.iterdir())


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
    assert not hasattr(auto, "keras_model")  # nothing kept for it: no Keras bytes in memory
    by_keras = load_runner(str(model_dir), "keras")
    assert by_keras.runtime == "keras"
    np.testing.assert_allclose(by_keras.probabilities(images), expected, atol=1e-5)
    bare = load_runner(str(onnx))
    assert bare.runtime == "onnx" and bare.probabilities(images[:2]).shape == (2, 10)
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


def test_a_version_whose_onnx_tag_says_no_runs_through_keras(model_dir, tmp_path):
    """The copy is there, but the version's `onnx` tag disowns it: Keras answers (and
    `--runtime onnx` says why); a version tagged `yes`, or untagged (older), runs the copy."""
    import mlflow

    from mnist.tracking import client
    from tests.conftest import tracking_store

    with tracking_store(tmp_path):
        logged = mlflow.initialize_logged_model(name="model")
        client().log_model_artifacts(logged.model_id, str(model_dir))
        client().create_registered_model("digits")
        for tags in ({"onnx": "no: disowned by hand"}, {"onnx": "yes"}, {}):
            client().create_model_version(
                "digits", f"models:/{logged.model_id}", tags=tags, model_id=logged.model_id
            )
        client().set_registered_model_alias("digits", "champion", "1")
        assert load_runner("models:/digits/1").runtime == "keras"
        assert load_runner("models:/digits@champion").runtime == "keras"
        with pytest.raises(MnistError) as caught:
            load_runner("models:/digits@champion", "onnx")
        assert str(caught.value) == (
            "model 'models:/digits@champion' has no ONNX copy (its onnx tag says "
            "'no: disowned by hand'); use --runtime keras"
        )
        assert load_runner("models:/digits/2").runtime == "onnx"
        assert load_runner("models:/digits/3").runtime == "onnx"
