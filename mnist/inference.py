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

from mnist import digits
from mnist.data import IMAGE_SIZE, PIXELS, read_csv
from mnist.errors import MnistError
from mnist.evaluation import predict_proba
from mnist.preprocess import RAW_RANGE, Arrays
from mnist.settings import NanPolicy
from mnist.validation import ValidationReport, validate

if TYPE_CHECKING:
    import keras

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg"}


def as_images(arr: np.ndarray, source: str) -> np.ndarray:
    """Numbers in any accepted shape -> (N, 28, 28), float32 or wider: a value just past 255 in
    float64 must not round into range before it is validated."""
    arr = np.asarray(arr)
    if arr.dtype.kind not in "uif":
        raise MnistError(f"{source}: expected numbers, found dtype {arr.dtype}")
    if arr.shape in ((IMAGE_SIZE, IMAGE_SIZE), (PIXELS,)):
        arr = arr[None]
    if arr.ndim >= 2 and arr[0].size == PIXELS:
        return arr.reshape(-1, IMAGE_SIZE, IMAGE_SIZE).astype(np.result_type(arr, np.float32))
    raise MnistError(f"{source}: shape {arr.shape} is not (N, 28, 28), (N, 784) or (28, 28)")


def read_image(path: Path) -> np.ndarray:
    """A grayscale digit image: 28x28 as it is, any other size prepared MNIST-style."""
    try:
        data = path.read_bytes()
    except OSError as exc:
        raise MnistError(f"{path}: cannot read file ({exc.strerror})") from exc
    return digits.from_image_bytes(data, str(path))


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
            batch, labelled = _load_npy(path), True
        elif suffix == ".npz":
            batch, labelled = _load_npz(path), True
        elif suffix == ".csv":
            batch, labelled = _load_csv(path), True
        else:
            raise MnistError(f"{path}: unsupported input type (use .npy, .npz, .csv, .png, .jpg)")
        images.append(batch)
        names += [f"{path}[{i}]" for i in range(len(batch))] if labelled else [str(path)]
    if not images:
        raise MnistError("no inputs given")
    return np.concatenate(images), names


def _load_npy(path: Path) -> np.ndarray:
    try:
        return as_images(np.load(path, allow_pickle=False), str(path))
    except (OSError, ValueError) as exc:
        raise MnistError(f"{path}: not a readable .npy file ({exc})") from exc


def _load_npz(path: Path) -> np.ndarray:
    try:
        with np.load(path, allow_pickle=False) as z:
            keys = [k for k in ("x_test", "x", "images") if k in z] or list(z.keys())[:1]
            if not keys:
                raise MnistError(f"{path}: no arrays in .npz file")
            return as_images(z[keys[0]], f"{path}:{keys[0]}")
    except (OSError, ValueError) as exc:
        raise MnistError(f"{path}: not a readable .npz file ({exc})") from exc


def _load_csv(path: Path) -> np.ndarray:
    """784 pixel columns, or 785 with a leading label (ignored)."""
    try:
        with path.open("rb") as f:  # bytes: read_csv reports a file that is not text
            width = f.readline(1 << 20).count(b",") + 1
    except OSError as exc:
        raise MnistError(f"{path}: cannot read file ({exc.strerror})") from exc
    return as_images(read_csv(path, labelled=width == PIXELS + 1).images, str(path))


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
