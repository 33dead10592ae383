"""The ONNX copy of a logged model: exporting a raw-pixel Keras model to ONNX, running a copy
with ONNX Runtime (`OnnxDigits`, vetted to be a digits model), and checking a copy against its
Keras model (`check`).

Importing this module, and running a copy, loads neither TensorFlow nor Keras: only exporting
and checking (which take a Keras model) do.
"""

from __future__ import annotations

import contextlib
import logging
import os
import warnings
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from mnist.errors import MnistError, first_line
from mnist.mnist_pyfunc import CHUNK, ONNX_FILE, onnx_session

if TYPE_CHECKING:
    import keras

SAME_DIGIT_MIN = 0.9999
"""The least fraction of images on which the copy must give the same digit as Keras."""
MAX_ABS_DIFF = 1e-4
"""The most any probability of the copy may differ from Keras's."""
IMAGE_SHAPE = (28, 28)
CLASSES = 10
_NOISY_LOGGERS = ("tf2onnx", "tensorflow", "absl", "onnx")


@contextlib.contextmanager
def quiet() -> Iterator[None]:
    """Silence tf2onnx's and TensorFlow's loggers and warnings while a model is exported."""
    loggers = [logging.getLogger(name) for name in _NOISY_LOGGERS]
    levels = [logger.level for logger in loggers]
    for logger in loggers:
        logger.setLevel(logging.ERROR)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            yield
    finally:
        for logger, level in zip(loggers, levels, strict=True):
            logger.setLevel(level)


def export_onnx(model: keras.Model, path: Path) -> Path:
    """Write `model` (raw pixels (N, 28, 28) -> (N, 10)) to `path` as ONNX, through Keras's
    own export (tf2onnx under TensorFlow); any failure is one `MnistError`, and no file is left."""
    path = Path(path)
    try:
        if not getattr(model, "_called", True):  # Keras exports only a model called once
            model(np.zeros((1, *IMAGE_SHAPE), np.float32))
        with quiet():
            model.export(str(path), format="onnx", verbose=False)
    except Exception as exc:  # tf2onnx fails on an unsupported op anywhere in the graph
        path.unlink(missing_ok=True)
        raise MnistError(f"ONNX export failed: {type(exc).__name__}: {first_line(exc)}") from exc
    return path


def _shape(dims: list[Any]) -> str:
    return "[" + ", ".join("N" if not isinstance(d, int) else str(d) for d in dims) + "]"


class OnnxDigits:
    """An ONNX digits model run by ONNX Runtime: one float input (N, 28, 28) of raw 0-255
    pixels with a free batch size, one float output (N, 10) of probabilities; anything else is
    refused in one line.

    The file is read into memory and given to ONNX Runtime as bytes, with an empty temporary
    folder as the only place external data may come from (`mnist_pyfunc.onnx_session`): a
    graph whose tensors live in external files (which ONNX Runtime would otherwise look for in
    the working directory) is refused. `threads` caps ONNX Runtime's threads per call
    (default: its own choice, one per core)."""

    def __init__(self, path: str | Path, threads: int | None = None) -> None:
        self.path = Path(path)
        try:
            content = self.path.read_bytes()
        except OSError as exc:
            raise MnistError(f"cannot read ONNX model {str(self.path)!r}: {exc.strerror}") from exc
        try:
            self.session = onnx_session(content, threads)
        except Exception as exc:  # corrupt, truncated, not ONNX: ONNX Runtime says why
            detail = first_line(exc).replace("[ONNXRuntimeError] : ", "")
            if "external data" in detail.lower():
                raise MnistError(
                    f"ONNX model {str(self.path)!r} stores tensors in external files "
                    f"({detail}): refused"
                ) from exc
            raise MnistError(
                f"cannot load ONNX model {str(self.path)!r}: not a valid ONNX model ({detail})"
            ) from exc
        self.input_name = self._vet()

    def _vet(self) -> str:
        """The name of the input, once the graph's signature is a digits model's."""
        inputs, outputs = self.session.get_inputs(), self.session.get_outputs()
        if len(inputs) != 1 or len(outputs) != 1:
            raise MnistError(
                f"ONNX model {str(self.path)!r} has {len(inputs)} input(s) and "
                f"{len(outputs)} output(s); a digits model has one of each"
            )
        given, answer = inputs[0], outputs[0]
        if (
            given.type != "tensor(float)"
            or len(given.shape) != 3
            or isinstance(given.shape[0], int)  # a fixed batch size
            or list(given.shape[1:]) != list(IMAGE_SHAPE)
        ):
            raise MnistError(
                f"ONNX model {str(self.path)!r} takes {given.type} {_shape(given.shape)}; "
                "a digits model takes tensor(float) [N, 28, 28]"
            )
        if (
            answer.type != "tensor(float)"
            or len(answer.shape) != 2
            or isinstance(answer.shape[0], int)
            or answer.shape[1] != CLASSES
        ):
            raise MnistError(
                f"ONNX model {str(self.path)!r} answers {answer.type} {_shape(answer.shape)}; "
                "a digits model answers tensor(float) [N, 10]"
            )
        return given.name

    def probabilities(self, x: np.ndarray, chunk: int = CHUNK) -> np.ndarray:
        """(N, 10) float32 probabilities of raw pixels `x` (N, 28, 28), `chunk` images a call."""
        x = np.ascontiguousarray(x, dtype=np.float32)
        if x.size % (IMAGE_SHAPE[0] * IMAGE_SHAPE[1]):
            raise MnistError(f"images of shape {x.shape} are not 28x28 images")
        x = x.reshape(-1, *IMAGE_SHAPE)
        try:
            chunks = [self._run(x[i : i + chunk]) for i in range(0, len(x), chunk)]
        except Exception as exc:  # a graph that is well-typed can still fail on its data
            detail = first_line(exc).replace("[ONNXRuntimeError] : ", "")
            raise MnistError(f"ONNX model {str(self.path)!r} failed to run: {detail}") from exc
        return np.concatenate(chunks) if chunks else np.zeros((0, CLASSES), np.float32)

    def _run(self, x: np.ndarray) -> np.ndarray:
        answer = np.asarray(self.session.run(None, {self.input_name: x})[0], np.float32)
        if answer.shape != (len(x), CLASSES):
            raise ValueError(f"it answered {answer.shape} for {len(x)} image(s)")
        return answer


@dataclass(frozen=True)
class OnnxCheck:
    """How an ONNX copy agrees with its Keras model on `images` images."""

    same_digit: float  # fraction of images given the same digit
    max_abs_diff: float  # the largest difference of any probability
    images: int

    @property
    def passed(self) -> bool:
        return (
            self.images > 0
            and self.same_digit >= SAME_DIGIT_MIN
            and self.max_abs_diff <= MAX_ABS_DIFF
        )

    def problem(self) -> str:
        """Why the check failed, in one line ('' when it passed)."""
        if self.passed:
            return ""
        if not self.images:
            return "checked on no images"
        return (
            f"the copy disagrees with Keras on {self.images} images: same digit "
            f"{self.same_digit:.4f} (at least {SAME_DIGIT_MIN}), max |diff| "
            f"{self.max_abs_diff:.1e} (at most {MAX_ABS_DIFF:.0e})"
        )

    def tags(self) -> dict[str, str]:
        """The tags of a logged model and its version: `onnx`, `onnx_same_digit`,
        `onnx_max_abs_diff`, `onnx_checked_on`."""
        return {
            "onnx": "yes" if self.passed else f"no: {self.problem()}",
            "onnx_same_digit": f"{self.same_digit:.4f}",
            "onnx_max_abs_diff": f"{self.max_abs_diff:.1e}",
            "onnx_checked_on": str(self.images),
        }


def compare(onnx: np.ndarray, keras: np.ndarray) -> OnnxCheck:
    """The agreement of two (N, 10) arrays of probabilities."""
    if onnx.shape != keras.shape:
        raise MnistError(f"ONNX answers {onnx.shape}, Keras {keras.shape}")
    if not len(onnx):
        return OnnxCheck(0.0, 0.0, 0)
    same = float(np.mean(onnx.argmax(axis=1) == keras.argmax(axis=1)))
    diff = float(np.max(np.abs(onnx.astype(np.float64) - keras.astype(np.float64))))
    return OnnxCheck(same, diff if np.isfinite(diff) else float("inf"), len(onnx))


def check(onnx: OnnxDigits, keras_model: keras.Model, images: np.ndarray) -> OnnxCheck:
    """How `onnx` agrees with `keras_model` on raw-pixel `images` (N, 28, 28)."""
    from mnist.mnist_pyfunc import probabilities

    x = np.asarray(images, np.float32).reshape(-1, *IMAGE_SHAPE)
    return compare(onnx.probabilities(x), probabilities(keras_model, x))


def make_copy(model: keras.Model, directory: Path, images: np.ndarray) -> tuple[Path | None, dict]:
    """Export `model` into `directory/model.onnx` and check it on `images`: the file (None when
    the export failed or the check did not pass, and then no file is left) and its tags. Any
    failure (ours, the converter's, ONNX Runtime's, Keras's) only costs the copy: the model is
    logged all the same."""
    path = Path(directory) / ONNX_FILE
    try:
        export_onnx(model, path)
        result = check(OnnxDigits(path, threads=os.cpu_count()), model, images)
    except MnistError as exc:
        path.unlink(missing_ok=True)
        return None, {"onnx": f"no: {exc}"}
    except Exception as exc:  # whatever a library throws: the model is logged without a copy
        path.unlink(missing_ok=True)
        return None, {"onnx": f"no: {type(exc).__name__}: {first_line(exc)}"}
    if not result.passed:
        path.unlink(missing_ok=True)
        return None, result.tags()
    return path, result.tags()
