"""Raw splits -> model-ready arrays: (N, 28, 28, 1) float32 in [0, 1], one-hot labels, a
seeded stratified validation split.

Deliberately tolerant: NaN, out-of-range values, odd shapes and labels outside 0-9 pass
through (invalid labels as all-zero rows) so that `mnist.validation` can count and report them.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from mnist.data import IMAGE_SIZE, PIXELS, Dataset

NUM_CLASSES = 10
MAX_PIXEL = np.float32(255.0)
"""Raw pixels run 0-255; model inputs are raw / MAX_PIXEL."""
RAW_RANGE = (0.0, float(MAX_PIXEL))


@dataclass(frozen=True)
class Arrays:
    """Model-ready arrays of one split; `y` is one-hot (N, 10) or None for unlabelled input."""

    x: np.ndarray
    y: np.ndarray | None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels (argmax of the one-hot rows)."""
        return self.y.argmax(axis=1)

    def take(self, index: np.ndarray) -> Arrays:
        return Arrays(self.x[index], None if self.y is None else self.y[index])


@dataclass(frozen=True)
class Prepared:
    """The three splits a training run uses."""

    train: Arrays
    val: Arrays
    test: Arrays

    def splits(self) -> dict[str, Arrays]:
        return {"train": self.train, "val": self.val, "test": self.test}


def scale(images: np.ndarray) -> np.ndarray:
    """Pixels 0-255 -> float32 in [0, 1], shaped (N, 28, 28, 1) when each image has 784 values."""
    x = np.asarray(images, dtype=np.float32) / MAX_PIXEL
    n = len(x)
    if x.size == n * PIXELS:
        return x.reshape(n, IMAGE_SIZE, IMAGE_SIZE, 1)
    return x.reshape(n, *x.shape[1:], 1) if x.ndim >= 2 else x


def unscale(x: np.ndarray) -> np.ndarray:
    """The inverse of `scale`: model inputs -> raw pixels (N, 28, 28) float32 in 0-255, what a
    logged model (which scales inside itself) takes."""
    return (np.asarray(x, dtype=np.float32) * MAX_PIXEL).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)


def one_hot(labels: np.ndarray) -> np.ndarray:
    """Labels -> one-hot float32 (N, 10); a label outside 0-9 (or NaN) becomes an all-zero row."""
    labels = np.asarray(labels)
    return (labels.reshape(-1, 1) == np.arange(NUM_CLASSES)).astype(np.float32)


def stratified_split(
    labels: np.ndarray, fraction: float, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """Indices (train, val): `fraction` of each class goes to val, chosen by `seed`."""
    rng = np.random.default_rng(seed)
    val: list[np.ndarray] = []
    for cls in np.unique(labels):
        idx = np.flatnonzero(labels == cls)
        rng.shuffle(idx)
        val.append(idx[: round(len(idx) * fraction)])
    val_idx = np.sort(np.concatenate(val)) if val else np.array([], dtype=np.int64)
    train_idx = np.setdiff1d(np.arange(len(labels)), val_idx, assume_unique=True)
    return rng.permutation(train_idx), val_idx


def prepare(
    data: Dataset,
    validation_split: float,
    seed: int,
    train_limit: int | None = None,
    test_limit: int | None = None,
) -> Prepared:
    """Scale, reshape and one-hot every split, and hold out a seeded stratified validation set."""
    tr, te = data.train, data.test
    train = Arrays(scale(tr.images[:train_limit]), one_hot(tr.labels[:train_limit]))
    test = Arrays(scale(te.images[:test_limit]), one_hot(te.labels[:test_limit]))
    if len(train.x) != len(train.y):  # counts differ: leave it whole for validation to report
        return Prepared(train, Arrays(train.x[:0], train.y[:0]), test)
    train_idx, val_idx = stratified_split(
        np.asarray(tr.labels[:train_limit]), validation_split, seed
    )
    return Prepared(train.take(train_idx), train.take(val_idx), test)
