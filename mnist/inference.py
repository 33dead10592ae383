"""Predict digits for new inputs (arrays, CSV rows, images) with a loaded model.

Inputs become raw pixels (N, 28, 28) float32 in 0-255, go through the same validation and
NaN policy as training data, and are fed to the model, which carries its own scaling. The model
is anything with `probabilities(x)`: a runner of `mnist.tracking.load_runner`, through ONNX
Runtime or Keras. Importing this module imports neither TensorFlow nor Keras.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

import numpy as np

from mnist.errors import MnistError
from mnist.preprocess import RAW_RANGE, Arrays
from mnist.readers import (
    IMAGE_SIZE,
    IMAGE_SUFFIXES,
    as_images,
    read_image,
    read_npy,
    read_npz,
    read_pixel_csv,
)
from mnist.settings import NanPolicy
from mnist.validation import ValidationReport, validate

if TYPE_CHECKING:
    import pandas as pd

__all__ = [
    "IMAGE_SUFFIXES",
    "Predictions",
    "Probabilities",
    "as_images",
    "predict",
    "read_image",
    "read_inputs",
]


class Probabilities(Protocol):
    """A model ready to predict: raw pixels (N, 28, 28) float32 -> probabilities (N, 10)."""

    def probabilities(self, x: np.ndarray) -> np.ndarray: ...


def read_inputs(paths: list[Path]) -> tuple[np.ndarray, list[str]]:
    """Raw pixels (N, 28, 28), float32 or wider, and a name per image (`file`, `file[row]`)."""
    images, names = [], []
    for path in paths:
        if not path.is_file():
            raise MnistError(f"{path}: no such file")
        suffix = path.suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            batch, labelled = read_image(path)[None], False
        elif suffix == ".npy":
            batch, labelled = as_images(read_npy(path), str(path)), True
        elif suffix == ".npz":
            batch, labelled = _load_npz(path), True
        elif suffix == ".csv":
            batch, labelled = read_pixel_csv(path), True
        else:
            raise MnistError(f"{path}: unsupported input type (use .npy, .npz, .csv, .png, .jpg)")
        images.append(batch)
        names += [f"{path}[{i}]" for i in range(len(batch))] if labelled else [str(path)]
    if not images:
        raise MnistError("no inputs given")
    return np.concatenate(images), names


def _load_npz(path: Path) -> np.ndarray:
    """The images of an .npz: `x_test`, `x` or `images`, else its first array."""
    ((name, arr),) = read_npz(path, one_of=("x_test", "x", "images")).items()
    return as_images(arr, f"{path}:{name}")


@dataclass(frozen=True)
class Predictions:
    table: pd.DataFrame  # input, digit, probability, and one column per class
    report: ValidationReport


def predict(
    model: Probabilities, images: np.ndarray, names: list[str], policy: NanPolicy = "fail"
) -> Predictions:
    """Validate raw pixels under `policy`, then predict a digit and its probability for each."""
    import pandas as pd

    x = images.reshape(len(images), IMAGE_SIZE, IMAGE_SIZE, 1)  # validated before any narrowing
    cleaned, report = validate({"input": Arrays(x, None)}, policy, RAW_RANGE)
    kept = cleaned["input"].x.astype(np.float32)
    rows = report.splits["input"].kept
    rows = np.arange(len(x)) if rows is None else rows
    probabilities = (
        model.probabilities(kept.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
        if len(kept)
        else np.zeros((0, 10), np.float32)  # every input dropped: no model call
    )
    table = pd.DataFrame(
        {
            "input": [names[i] for i in rows],
            "digit": probabilities.argmax(axis=1),
            "probability": probabilities.max(axis=1).round(4),
        }
    )
    return Predictions(table, report)
