"""The holdout rule: which added samples are held out from training, decided once, for good.

The rule works within each source and digit: of the samples of one digit from one source,
every `HOLDOUT_EVERY`-th (in the order stored; within one batch, in the order of their
digests) is held out, which makes the holdout stratified by digit and source. An image already
stored (the same pixels, whatever its label) takes that one's split, so no image is both
trained on and judged on. Pure: the store hands it what it knows and stores what it decides.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence

import numpy as np

HOLDOUT_EVERY = 5
"""Every fifth sample of each source and digit is held out: 20% of the added data."""


def sample_digest(pixels: np.ndarray, label: int | None = None) -> str:
    """SHA-256 of a sample: its label and pixels, or (label None) its pixels alone."""
    head = b"" if label is None else bytes([label])
    return hashlib.sha256(head + np.ascontiguousarray(pixels, np.uint8).tobytes()).hexdigest()


def assign(
    labels: Sequence[int],
    digests: Sequence[str],
    images: Sequence[str],
    counts: dict[int, int],
    known: dict[str, bool],
) -> list[bool]:
    """Whether each new sample of one source is held out, in the order given.

    `digests` name each sample (label and pixels), `images` its pixels alone; `counts` are the
    samples of each digit that source already has, `known` the split of every image already
    stored. Both are updated, so that a repeat within the batch takes its first copy's split.
    """
    holdout = [False] * len(labels)
    for i in sorted(range(len(labels)), key=lambda i: digests[i]):
        label = labels[i]
        ordinal = counts.get(label, 0)
        counts[label] = ordinal + 1
        holdout[i] = known.setdefault(images[i], ordinal % HOLDOUT_EVERY == HOLDOUT_EVERY - 1)
    return holdout
