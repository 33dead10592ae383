"""Runners: a logged model ready to answer, through its ONNX copy with ONNX Runtime (no
TensorFlow imported) or through Keras. `load_runner` picks the runtime.

`runtime="auto"` takes the ONNX copy (`data/model.onnx`) when the model has one, else Keras;
`"onnx"` insists on the copy, `"keras"` always loads Keras. An ONNX runner keeps the model's
Keras file in memory, so `keras_model()` loads Keras only when asked (for embeddings, a card).
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from mnist.errors import MnistError
from mnist.tracking.model_files import ONNX_FILE, fetch_model, keras_file, load_keras

if TYPE_CHECKING:
    import keras

    from mnist.onnx_model import OnnxDigits

RUNTIMES = ("auto", "onnx", "keras")
Runtime = Literal["onnx", "keras"]


class Runner(Protocol):
    """A model that answers raw pixels (N, 28, 28) with probabilities (N, 10)."""

    @property
    def runtime(self) -> Runtime:
        """`"onnx"` (ONNX Runtime) or `"keras"`."""
        ...

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        """(N, 10) float32 probabilities of raw 0-255 pixels (N, 28, 28)."""
        ...

    def keras_model(self) -> keras.Model:
        """The Keras model itself, loaded on first use."""
        ...


class KerasRunner:
    """A Keras model, run one graph call per chunk (`mnist_pyfunc.probabilities`)."""

    runtime: Runtime = "keras"

    def __init__(self, model: keras.Model) -> None:
        self.model = model

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        from mnist.mnist_pyfunc import probabilities

        return probabilities(self.model, np.asarray(x, np.float32).reshape(-1, 28, 28))

    def keras_model(self) -> keras.Model:
        return self.model


class OnnxRunner:
    """A model's ONNX copy in ONNX Runtime, with its Keras file kept aside (bytes, or None
    for a bare `.onnx` file) for `keras_model()`."""

    runtime: Runtime = "onnx"

    def __init__(self, digits: OnnxDigits, ref: str, keras_bytes: bytes | None) -> None:
        self.digits, self.ref, self._keras_bytes = digits, ref, keras_bytes
        self._model: keras.Model | None = None

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return self.digits.probabilities(x)

    def keras_model(self) -> keras.Model:
        if self._model is None:
            if self._keras_bytes is None:
                raise MnistError(f"model {self.ref!r} is an ONNX file: it has no Keras model")
            with tempfile.TemporaryDirectory(prefix="mnist-model-") as scratch:
                path = Path(scratch) / "model.keras"
                path.write_bytes(self._keras_bytes)
                self._model = load_keras(path, self.ref)
        return self._model


def load_runner(ref: str, runtime: str = "auto", threads: int | None = None) -> Runner:
    """The model `ref` names (what `load_model` accepts, or a bare `.onnx` file), run by
    `runtime`: `auto` (ONNX when the model has a copy, else Keras), `onnx` or `keras`.
    `threads` caps ONNX Runtime's threads per call (default: one per core)."""
    from mnist.tracking.model_files import load_model

    if runtime not in RUNTIMES:
        raise MnistError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    path = Path(ref).expanduser()
    if path.suffix == ".onnx" and path.is_file():
        if runtime == "keras":
            raise MnistError(f"model {ref!r} is an ONNX file: it runs only with ONNX Runtime")
        return OnnxRunner(_digits(path, threads), ref, None)
    if runtime == "keras":
        return KerasRunner(load_model(ref))
    with tempfile.TemporaryDirectory(prefix="mnist-model-") as scratch:
        found = fetch_model(ref, Path(scratch))
        keras_path = keras_file(found)
        onnx = keras_path.parent / ONNX_FILE if found.is_dir() else None
        if onnx is None or not onnx.is_file():
            if runtime == "onnx":
                what = "a .keras file" if onnx is None else "it was logged without one"
                raise MnistError(f"model {ref!r} has no ONNX copy ({what}); use --runtime keras")
            return KerasRunner(load_keras(keras_path, ref))
        return OnnxRunner(_digits(onnx, threads, ref), ref, keras_path.read_bytes())


def _digits(path: Path, threads: int | None, ref: str | None = None) -> OnnxDigits:
    from mnist.onnx_model import OnnxDigits

    try:
        return OnnxDigits(path, threads)
    except MnistError as exc:
        if ref is None:
            raise
        raise MnistError(f"model {ref!r}: {exc}") from exc
