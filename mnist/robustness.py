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


def examples(images: np.ndarray, count: int = 8) -> Figure:
    """The first `count` images as they are and under every transform, one row each, drawn as
    one picture (one image per axes would cost a second)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shown = _planes(np.asarray(images)[:count]).astype(np.float32)
    rows = {UNCHANGED: shown, **{name: t(shown) for name, t in TRANSFORMS.items()}}
    side, gap = shown.shape[-1], 2
    cell = side + gap
    montage = np.full((len(rows) * cell - gap, len(shown) * cell - gap), np.nan, np.float32)
    for r, row in enumerate(rows.values()):
        for c, image in enumerate(row):
            montage[r * cell : r * cell + side, c * cell : c * cell + side] = image
    width, height = 0.45 * len(shown), 0.45 * len(rows)
    fig, ax = plt.subplots(figsize=(width + 2.0, height + 0.4))
    fig.subplots_adjust(
        left=2.0 / (width + 2.0), right=0.99, bottom=0.01, top=height / (height + 0.4)
    )
    ax.imshow(np.ma.masked_invalid(montage), cmap="gray", vmin=0, vmax=float(shown.max()) or 1.0)
    ax.set_facecolor("white")
    ax.set_xticks([])
    ax.set_yticks([r * cell + side / 2 for r in range(len(rows))], list(rows), fontsize=8)
    ax.tick_params(length=0)
    for spine in ax.spines.values():
        spine.set_visible(False)
    ax.set_title("Test digits as the robustness table changes them", fontsize=9)
    return fig
