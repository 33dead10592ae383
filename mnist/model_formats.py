"""A logged model written out for use elsewhere: its ONNX copy, a TensorFlow SavedModel, or a
LiteRT (TensorFlow Lite) flat buffer, each loaded back in its own runtime and compared with
the Keras model before it is declared written.

A copy is whole or absent: it is written into a temporary folder beside the destination,
checked there, then moved into place; an existing destination is never overwritten, and a
failure on the way leaves nothing behind.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from mnist.errors import MnistError, first_line
from mnist.onnx_model import MAX_ABS_DIFF, OnnxCheck, OnnxDigits, compare, export_onnx, quiet
from mnist.tracking.model_files import ONNX_FILE, fetch_model, keras_file, load_keras

if TYPE_CHECKING:
    import keras

FORMATS = ("onnx", "saved_model", "litert")


@dataclass(frozen=True)
class Written:
    """A copy written to `path`, and how it agreed with Keras when loaded back."""

    path: Path
    format: str
    agreement: OnnxCheck
    source: str  # "the logged ONNX copy" or "exported from Keras"


def check_images(count: int = 32, seed: int = 0) -> np.ndarray:
    """MNIST-like raw pixels (N, 28, 28): mostly black, a bright blob of strokes in the middle."""
    rng = np.random.default_rng(seed)
    x = np.zeros((count, 28, 28), np.float32)
    for image in x:
        strokes = rng.integers(6, 22, size=(40, 2))
        image[strokes[:, 0], strokes[:, 1]] = rng.uniform(128, 255, 40)
        image[strokes[:, 0] + 1, strokes[:, 1]] = 255.0
    return x


def _onnx(model: keras.Model, found: Path, target: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    logged = keras_file(found).parent / ONNX_FILE if found.is_dir() else None
    if logged is not None and logged.is_file():
        shutil.copyfile(logged, target)
        source = "the logged ONNX copy"
    else:
        export_onnx(model, target)
        source = "exported from Keras"
    return OnnxDigits(target).probabilities(x), source


def _saved_model(
    model: keras.Model, found: Path, target: Path, x: np.ndarray
) -> tuple[np.ndarray, str]:
    import tensorflow as tf

    with quiet():
        model.export(str(target), format="tf_saved_model", verbose=False)
        loaded = tf.saved_model.load(str(target))
        answer = loaded.serve(tf.constant(x))  # pyright: ignore[reportAttributeAccessIssue]
    return np.asarray(answer), "exported from Keras"


def _litert(model: keras.Model, found: Path, target: Path, x: np.ndarray) -> tuple[np.ndarray, str]:
    import tensorflow as tf
    from ai_edge_litert.interpreter import Interpreter

    with quiet(), tempfile.TemporaryDirectory(dir=target.parent) as scratch:
        model.export(scratch, format="tf_saved_model", verbose=False)
        flat = tf.lite.TFLiteConverter.from_saved_model(scratch).convert()
        target.write_bytes(flat)  # pyright: ignore[reportArgumentType]
    with _no_stderr():  # LiteRT's C++ says "INFO: Created TensorFlow Lite XNNPACK delegate"
        interpreter = Interpreter(model_path=str(target))
        given, answer = interpreter.get_input_details()[0], interpreter.get_output_details()[0]
        interpreter.resize_tensor_input(given["index"], list(x.shape))
        interpreter.allocate_tensors()
        interpreter.set_tensor(given["index"], x)
        interpreter.invoke()
    return np.asarray(interpreter.get_tensor(answer["index"])), "converted from Keras"


@contextlib.contextmanager
def _no_stderr() -> Iterator[None]:
    """The process's file descriptor 2 sent to /dev/null (C++ libraries write there)."""
    saved = os.dup(2)
    try:
        with open(os.devnull, "w") as null:
            os.dup2(null.fileno(), 2)
            yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)


WRITERS: dict[str, Callable[[keras.Model, Path, Path, np.ndarray], tuple[np.ndarray, str]]] = {
    "onnx": _onnx,
    "saved_model": _saved_model,
    "litert": _litert,
}


def write_copy(ref: str, format: str, target: Path) -> Written:
    """Write the model `ref` (what `load_model` accepts) to `target` in `format`, after loading
    it back and comparing it with Keras on `check_images`: same digit on every image, every
    probability within `MAX_ABS_DIFF`."""
    if format not in FORMATS:
        raise MnistError(f"unknown format {format!r}; choose one of: {', '.join(FORMATS)}")
    target = Path(target).expanduser()
    if target.exists() or target.is_symlink():
        raise MnistError(f"{str(target)!r} exists: give a new path (nothing was written)")
    try:
        work = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    except OSError as exc:
        raise MnistError(f"cannot write {str(target)!r}: {exc.strerror}") from exc
    try:
        found = fetch_model(ref, work)
        model = load_keras(keras_file(found), ref)
        x = check_images()
        from mnist.mnist_pyfunc import probabilities

        expected = probabilities(model, x)
        written = work / f"copy-{target.name}"
        try:
            answers, source = WRITERS[format](model, found, written, x)
        except MnistError:
            raise
        except Exception as exc:  # a converter or runtime fails anywhere inside
            detail = f"{type(exc).__name__}: {first_line(exc)}"
            raise MnistError(f"cannot write {ref!r} as {format}: {detail}") from exc
        agreement = compare(answers.reshape(expected.shape), expected)
        if agreement.same_digit < 1.0 or agreement.max_abs_diff > MAX_ABS_DIFF:
            raise MnistError(
                f"the {format} copy of {ref!r} disagrees with Keras (same digit "
                f"{agreement.same_digit:.4f}, max |diff| {agreement.max_abs_diff:.1e}); "
                "nothing was written"
            )
        _move(written, target)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return Written(target, format, agreement, source)


def _move(written: Path, target: Path) -> None:
    """Into place without overwriting: a file is hard-linked (which fails if `target` appeared
    meanwhile), a directory renamed."""
    try:
        if written.is_dir():
            if target.exists():
                raise FileExistsError(17, "File exists")
            os.rename(written, target)
        else:
            os.link(written, target)
    except OSError as exc:
        raise MnistError(f"cannot write {str(target)!r}: {exc.strerror}") from exc
