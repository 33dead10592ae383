"""Load a saved model and predict digits for new inputs: arrays, CSV rows, images.

Inputs become raw pixels (N, 28, 28) float32 in 0-255, go through the same validation and
NaN policy as training data, and are fed to the model, which carries its own scaling.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd

from mnist.errors import MnistError
from mnist.evaluation import predict_proba
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
    import keras

__all__ = ["IMAGE_SUFFIXES", "Predictions", "as_images", "predict", "read_image", "read_inputs"]


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
    model: keras.Model, images: np.ndarray, names: list[str], policy: NanPolicy = "fail"
) -> Predictions:
    """Validate raw pixels under `policy`, then predict a digit and its probability for each."""
    x = images.reshape(len(images), IMAGE_SIZE, IMAGE_SIZE, 1)  # validated before any narrowing
    cleaned, report = validate({"input": Arrays(x, None)}, policy, RAW_RANGE)
    kept = cleaned["input"].x.astype(np.float32)
    rows = report.splits["input"].kept
    rows = np.arange(len(x)) if rows is None else rows
    probabilities = predict_proba(model, kept.reshape(-1, IMAGE_SIZE, IMAGE_SIZE))
    table = pd.DataFrame(
        {
            "input": [names[i] for i in rows],
            "digit": probabilities.argmax(axis=1),
            "probability": probabilities.max(axis=1).round(4),
        }
    )
    return Predictions(table, report)
