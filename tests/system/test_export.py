"""`mnist export VERSION --format onnx|saved_model|litert -o PATH` as users run it, on the
suite's trained version (`full_run`): each file loads in its own runtime (ONNX Runtime,
TensorFlow, LiteRT's interpreter) and agrees with Keras on MNIST test digits; a bad format or
an unwritable or existing path is one line and leaves nothing behind."""

from __future__ import annotations

import os
import subprocess
import sys

import numpy as np
import pytest

from mnist import preprocess

pytestmark = pytest.mark.slow  # a trained version and `mnist` processes: not the unit tier


def _mnist(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env=dict(os.environ),
    )


@pytest.fixture(scope="module")
def version(full_run, mnist_data) -> tuple[str, np.ndarray, np.ndarray]:
    """The trained version's number, 500 MNIST test digits (raw pixels) and its Keras answers."""
    from mnist.tracking import load_model

    config, result = full_run
    x = preprocess.unscale(preprocess.scale(mnist_data.test.images[:500]))
    model = load_model(f"models:/{config.registered_model}/{result.model_version}")
    return str(result.model_version), x, np.asarray(model.predict_on_batch(x))


def _agrees(answers: np.ndarray, expected: np.ndarray) -> None:
    assert (answers.argmax(axis=1) == expected.argmax(axis=1)).all()
    assert np.abs(answers - expected).max() <= 1e-4


def test_onnx_copy_loads_in_onnx_runtime_and_agrees(version, tmp_path):
    import onnxruntime as ort

    number, x, expected = version
    path = tmp_path / "digits.onnx"
    done = _mnist("export", number, "--format", "onnx", "-o", str(path))
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith(f"wrote {path} (onnx, the logged ONNX copy of models:/")
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    _agrees(np.asarray(session.run(None, {session.get_inputs()[0].name: x})[0]), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.onnx"]


def test_saved_model_loads_in_tensorflow_and_agrees(version, tmp_path):
    import tensorflow as tf

    number, x, expected = version
    path = tmp_path / "digits"
    done = _mnist("export", number, "--format", "saved_model", "-o", str(path))
    assert done.returncode == 0, done.stderr
    loaded = tf.saved_model.load(str(path))
    _agrees(np.asarray(loaded.serve(tf.constant(x))), expected)  # pyright: ignore[reportAttributeAccessIssue]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits"]


def test_litert_file_loads_in_the_litert_interpreter_and_agrees(version, tmp_path):
    from ai_edge_litert.interpreter import Interpreter

    number, x, expected = version
    path = tmp_path / "digits.tflite"
    done = _mnist("export", number, "--format", "litert", "-o", str(path))
    assert done.returncode == 0, done.stderr
    interpreter = Interpreter(model_path=str(path))
    given, answer = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
    interpreter.resize_tensor_input(given["index"], list(x.shape))
    interpreter.allocate_tensors()
    interpreter.set_tensor(given["index"], x)
    interpreter.invoke()
    _agrees(np.asarray(interpreter.get_tensor(answer["index"])), expected)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["digits.tflite"]


def test_bad_requests_are_one_line_and_leave_nothing(version, tmp_path):
    number, _, _ = version
    existing = tmp_path / "taken.onnx"
    existing.write_bytes(b"mine")
    cases = [
        (("--format", "tflite", "-o", str(tmp_path / "x")), 2, "unknown format 'tflite'"),
        (("-o", str(tmp_path / "no" / "m.onnx")), 1, "cannot write "),
        (("-o", str(existing / "m.onnx")), 1, f"cannot write {str(existing / 'm.onnx')!r}: "),
        (("-o", str(existing)), 1, f"{str(existing)!r} exists: give a new path"),
    ]
    if os.geteuid() != 0:  # root writes into a read-only folder all the same
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        cases.append((("-o", str(locked / "m.onnx")), 1, "cannot write "))
    for options, status, message in cases:
        done = _mnist("export", number, *options)
        assert done.returncode == status, done.stderr
        assert done.stderr.startswith(f"mnist: error: {message}"), done.stderr
        assert len(done.stderr.strip().splitlines()) == 1, done.stderr
    assert existing.read_bytes() == b"mine"
    assert {p.name for p in tmp_path.iterdir()} <= {"locked", "taken.onnx"}
    assert not any((tmp_path / "locked").glob("*"))
