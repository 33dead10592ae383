"""Raw splits -> model-ready arrays: (N, 28, 28, 1) float32 in [0, 1], one-hot labels, a
seeded stratified validation split.

Deliberately tolerant: NaN, out-of-range values, odd shapes and labels outside 0-9 pass
through (invalid labels as all-zero rows) so that `mnist.validation` can count and report them.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, replace

import numpy as np

from mnist.data import IMAGE_SIZE, PIXELS, Added, Dataset
from mnist.errors import MnistError

NUM_CLASSES = 10
MAX_PIXEL = np.float32(255.0)
"""Raw pixels run 0-255; model inputs are raw / MAX_PIXEL."""
RAW_RANGE = (0.0, float(MAX_PIXEL))


@dataclass(frozen=True)
class Arrays:
    """Model-ready arrays of one split; `y` is one-hot (N, 10) or None for unlabelled input;
    `groups` names each sample's source where a split mixes several (the holdout)."""

    x: np.ndarray
    y: np.ndarray | None
    groups: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.x)

    @property
    def labels(self) -> np.ndarray:
        """Integer labels (argmax of the one-hot rows)."""
        return self.labelled_y.argmax(axis=1)

    @property
    def labelled_y(self) -> np.ndarray:
        """`y` of a split that must be labelled (training, validation, test, holdout)."""
        if self.y is None:
            raise MnistError("unlabelled input has no labels")
        return self.y

    def take(self, index: np.ndarray) -> Arrays:
        def pick(a: np.ndarray | None) -> np.ndarray | None:
            return None if a is None else a[index]

        return Arrays(self.x[index], pick(self.y), pick(self.groups))

    def with_x(self, x: np.ndarray) -> Arrays:
        return replace(self, x=x)


@dataclass(frozen=True)
class Prepared:
    """The splits a training run uses: MNIST's test, and the added data's holdout (empty
    when nothing was added), on which it is judged."""

    train: Arrays
    val: Arrays
    test: Arrays
    holdout: Arrays
    added_repeats: int = 0  # how often each added training sample is in the training split

    def splits(self) -> dict[str, Arrays]:
        return {"train": self.train, "val": self.val, "test": self.test, "holdout": self.holdout}


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


def repeats(added: int, base: int, share: float) -> int:
    """How many times each of `added` samples appears in an epoch beside `base` others so that
    they make up about `share` of it (at least once each)."""
    if not added or share <= 0:
        return 1
    return max(1, math.ceil(share / (1 - share) * base / added - 1e-9))


def prepare(
    data: Dataset,
    validation_split: float,
    seed: int,
    train_limit: int | None = None,
    test_limit: int | None = None,
    added: Added | None = None,
    added_share: float = 0.0,
    rehearse: int | None = None,
) -> Prepared:
    """Scale, reshape and one-hot every split, and hold out a seeded stratified validation set
    of MNIST; with `rehearse`, train on only that many of the rest (a seeded sample, for a
    warm start). Added training samples join the training split, repeated to make up about
    `added_share` of it (a few hundred would otherwise drown among 54,000); the added holdout
    becomes its own split."""
    added = added or Added.nothing()
    tr, te = data.train, data.test
    train = Arrays(scale(tr.images[:train_limit]), one_hot(tr.targets[:train_limit]))
    test = Arrays(scale(te.images[:test_limit]), one_hot(te.targets[:test_limit]))
    holdout = Arrays(
        scale(added.holdout.images), one_hot(added.holdout.targets), added.holdout_sources
    )
    if len(train.x) != len(train.labelled_y):  # counts differ: left whole, for validation
        return Prepared(train, Arrays(train.x[:0], train.labelled_y[:0]), test, holdout)
    train_idx, val_idx = stratified_split(
        np.asarray(tr.targets[:train_limit]), validation_split, seed
    )
    train, val = train.take(train_idx[:rehearse]), train.take(val_idx)
    times = repeats(len(added.train), len(train), added_share) if len(added.train) else 0
    if times:
        extra_x = scale(np.tile(added.train.images, (times, 1, 1)))
        extra_y = one_hot(np.tile(added.train.targets, times))
        order = np.random.default_rng(seed).permutation(len(train) + len(extra_x))
        train = Arrays(
            np.concatenate([train.x, extra_x])[order],
            np.concatenate([train.labelled_y, extra_y])[order],
        )
    return Prepared(train, val, test, holdout, times)
