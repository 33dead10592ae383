"""Robustness: accuracy on test digits moved away from MNIST's framing: shifted by 1-3 pixels,
rotated by 10-20 degrees, thickened or thinned by one pixel (grey dilation and erosion, 3x3).

The transforms take images (N, 28, 28) or (N, 28, 28, 1) at any scale (raw 0-255 or 0-1) and
fill what they uncover with 0, MNIST's background.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

Transform = Callable[[np.ndarray], np.ndarray]


def _planes(images: np.ndarray) -> np.ndarray:
    """(N, H, W) view of (N, H, W) or (N, H, W, 1) images."""
    a = np.asarray(images)
    return a[..., 0] if a.ndim == 4 else a


def shift(images: np.ndarray, pixels: int) -> np.ndarray:
    """Move each digit `pixels` to the right and `pixels` down, filling with zeros."""
    planes = _planes(images)
    out = np.zeros_like(planes)
    if pixels == 0:
        out[:] = planes
    else:
        out[:, pixels:, pixels:] = planes[:, :-pixels, :-pixels]
    return out.reshape(np.shape(images))


def rotate(images: np.ndarray, degrees: float) -> np.ndarray:
    """Turn each digit `degrees` anticlockwise about the image centre (bilinear, zero fill)."""
    from scipy import ndimage

    planes = _planes(images)
    turned = ndimage.rotate(
        planes, degrees, axes=(2, 1), reshape=False, order=1, mode="constant", cval=0.0
    )
    return turned.astype(planes.dtype, copy=False).reshape(np.shape(images))


def thicken(images: np.ndarray) -> np.ndarray:
    """Strokes one pixel thicker: grey dilation with a 3x3 square."""
    from scipy import ndimage

    return ndimage.grey_dilation(_planes(images), size=(1, 3, 3)).reshape(np.shape(images))


def thin(images: np.ndarray) -> np.ndarray:
    """Strokes one pixel thinner: grey erosion with a 3x3 square (thin strokes may vanish)."""
    from scipy import ndimage

    return ndimage.grey_erosion(_planes(images), size=(1, 3, 3)).reshape(np.shape(images))


TRANSFORMS: dict[str, Transform] = {
    **{f"shifted {n} px right and down": partial(shift, pixels=n) for n in (1, 2, 3)},
    **{f"rotated {d} degrees": partial(rotate, degrees=d) for d in (10, 15, 20)},
    "thickened (3x3 dilation)": thicken,
    "thinned (3x3 erosion)": thin,
}
"""Every change the card measures, by the name its table shows."""

UNCHANGED = "unchanged"


@dataclass(frozen=True)
class Check:
    """Accuracy on the test digits under one transform."""

    name: str
    accuracy: float


def measure(
    probabilities: Callable[[np.ndarray], np.ndarray],
    images: np.ndarray,
    labels: np.ndarray,
    transforms: dict[str, Transform] | None = None,
) -> list[Check]:
    """Accuracy of `probabilities` (images -> (N, 10)) on the images as they are, then under
    each transform."""
    transforms = TRANSFORMS if transforms is None else transforms
    images = np.asarray(images)
    labels = np.asarray(labels)
    if not len(images):
        return []

    def accuracy(x: np.ndarray) -> float:
        return float(np.mean(np.asarray(probabilities(x)).argmax(axis=1) == labels))

    return [
        Check(UNCHANGED, accuracy(images)),
        *(Check(name, accuracy(t(images))) for name, t in transforms.items()),
    ]


def examples(images: np.ndarray, count: int = 6) -> Figure:
    """The first `count` images as they are and under every transform, one row each."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = np.asarray(images)[:count]
    rows = {UNCHANGED: shown, **{name: t(shown) for name, t in TRANSFORMS.items()}}
    fig, axes = plt.subplots(
        len(rows), len(shown), figsize=(1.1 * len(shown) + 2.2, 1.1 * len(rows)), squeeze=False
    )
    for r, (name, row) in enumerate(rows.items()):
        for c, image in enumerate(_planes(row)):
            ax = axes[r, c]
            ax.imshow(image, cmap="gray", vmin=0, vmax=float(np.max(shown)) or 1.0)
            ax.set_xticks([])
            ax.set_yticks([])
        axes[r, 0].set_ylabel(name, rotation=0, ha="right", va="center", fontsize=8)
    fig.suptitle("Test digits as the robustness table changes them", fontsize=10)
    fig.subplots_adjust(left=0.3, right=0.99, top=0.95, bottom=0.01, wspace=0.05, hspace=0.05)
    return fig
