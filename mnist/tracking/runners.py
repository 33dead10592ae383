"""Runners: a logged model ready to answer, through its ONNX copy with ONNX Runtime (no
TensorFlow imported) or through Keras. `load_runner` picks the runtime.

`runtime="auto"` takes the ONNX copy (`data/model.onnx`) when the model has one (and, for a
registered version, when its `onnx` tag does not say `no: ...`), else Keras; `"onnx"` insists on
the copy, `"keras"` always loads Keras.
"""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Literal, Protocol

import numpy as np

from mnist.errors import MnistError
from mnist.references import ModelRef
from mnist.tracking.model_files import fetch_model, keras_file, load_keras, onnx_copy

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


class KerasRunner:
    """A Keras model, run one graph call per chunk (`mnist_pyfunc.probabilities`)."""

    runtime: Runtime = "keras"

    def __init__(self, model: keras.Model) -> None:
        self.model = model

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        from mnist.mnist_pyfunc import probabilities

        return probabilities(self.model, np.asarray(x, np.float32).reshape(-1, 28, 28))


class OnnxRunner:
    """A model's ONNX copy in ONNX Runtime."""

    runtime: Runtime = "onnx"

    def __init__(self, digits: OnnxDigits) -> None:
        self.digits = digits

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        return self.digits.probabilities(x)


def load_runner(ref: str, runtime: str = "auto", threads: int | None = None) -> Runner:
    """The model `ref` names (what `load_model` accepts, or a bare `.onnx` file), run by
    `runtime`: `auto` (ONNX when the model has a copy that its version's `onnx` tag, if any,
    does not disown; else Keras), `onnx` or `keras`.
    `threads` caps ONNX Runtime's threads per call (default: one per core)."""
    from mnist.tracking.model_files import load_model

    if runtime not in RUNTIMES:
        raise MnistError(f"unknown runtime {runtime!r}; choose one of: {', '.join(RUNTIMES)}")
    path = Path(ref).expanduser()
    if path.suffix == ".onnx" and path.is_file():
        if runtime == "keras":
            raise MnistError(f"model {ref!r} is an ONNX file: it runs only with ONNX Runtime")
        return OnnxRunner(_digits(path, threads))
    if runtime == "keras":
        return KerasRunner(load_model(ref))
    where, refused = _version(ref)
    with tempfile.TemporaryDirectory(prefix="mnist-model-") as scratch:
        found = fetch_model(where, Path(scratch), ref)
        onnx = None if refused else onnx_copy(found)
        if onnx is None:
            if runtime == "onnx":
                what = "it was logged without one"
                if found.is_file():
                    what = "a .keras file"
                elif refused:
                    what = f"its onnx tag says {refused!r}"
                raise MnistError(f"model {ref!r} has no ONNX copy ({what}); use --runtime keras")
            return KerasRunner(load_keras(keras_file(found), ref))
        return OnnxRunner(_digits(onnx, threads, ref))


def _version(ref: str) -> tuple[str, str]:
    """Where to download a registered version from (`models:/NAME/N`, an alias resolved once,
    so the copy and its tag are the same version's) and its `onnx` tag when it says `no: ...`
    ('' otherwise: `yes`, or no tag on versions older than the copy); other references as
    they are."""
    parsed = ModelRef.parse(ref)
    if not parsed.registered or parsed.name is None:
        return ref, ""
    from mnist.tracking.store import call, client

    try:  # MLflow's own words name what is missing: the model, its alias or its version
        if parsed.alias is not None:
            mv = call(client().get_model_version_by_alias, parsed.name, parsed.alias)
        else:
            mv = call(client().get_model_version, parsed.name, str(parsed.version))
    except MnistError as exc:
        raise MnistError(f"cannot load model {ref!r}: {exc}") from exc
    tag = str((mv.tags or {}).get("onnx", "yes"))
    where = str(ModelRef.by_version(parsed.name, mv.version))
    return where, "" if tag == "yes" else tag


def _digits(path: Path, threads: int | None, ref: str | None = None) -> OnnxDigits:
    from mnist.onnx_model import OnnxDigits

    try:
        return OnnxDigits(path, threads)
    except MnistError as exc:
        if ref is None:
            raise
        raise MnistError(f"model {ref!r}: {exc}") from exc
