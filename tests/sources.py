"""A new source of handwriting for the tests and the warm-start benchmark: mirror writing.

MNIST digits flipped left to right, as if written on the back of the sheet or on a window:
the same ten digits, drawn in a way the MNIST champion has never seen (about 37% right,
against 99% on MNIST). Drawn from the end of MNIST's training split, which the tests' subsets
(`train_limit`) never reach, and never from the test split, so MNIST test stays untouched.
"""

from __future__ import annotations

import numpy as np

from mnist.data import Dataset

SOURCE = "mirror-writing"


def mirror_writing(mnist: Dataset, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    """`count` mirrored digits (uint8 (N, 28, 28)) and their labels, from `start` images before
    the end of MNIST's training split."""
    end = len(mnist.train) - start
    images, labels = mnist.train.images[end - count : end], mnist.train.labels[end - count : end]
    return np.ascontiguousarray(images[:, :, ::-1]), labels.copy()
