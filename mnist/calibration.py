"""Calibration: how far a model's confidence is from its accuracy. The expected calibration
error over equal-width confidence bins, and the reliability diagram that shows it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from matplotlib.figure import Figure

BINS = 15
"""Equal-width confidence bins, as in Guo et al. (2017), "On calibration of modern neural
networks", where the expected calibration error comes from."""


@dataclass(frozen=True)
class Reliability:
    """Per confidence bin: the images in it, their mean confidence and their accuracy (NaN
    for an empty bin). Bin i holds the confidences in (i/B, (i+1)/B]."""

    counts: np.ndarray  # (B,) int
    confidence: np.ndarray  # (B,)
    accuracy: np.ndarray  # (B,)

    @property
    def bins(self) -> int:
        return len(self.counts)

    @property
    def samples(self) -> int:
        return int(self.counts.sum())

    @property
    def ece(self) -> float:
        """Expected calibration error: the mean gap |accuracy - confidence| of the bins,
        weighted by their share of the images."""
        used = self.counts > 0
        if not used.any():
            return 0.0
        gaps = np.abs(self.accuracy[used] - self.confidence[used])
        return float(np.sum(self.counts[used] * gaps) / self.samples)

    @property
    def mean_confidence(self) -> float:
        used = self.counts > 0
        return float(np.sum(self.counts[used] * self.confidence[used]) / max(self.samples, 1))


def reliability(probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS) -> Reliability:
    """Bin the top-class confidence of `probabilities` (N, classes) against `labels` (N,)."""
    p = np.asarray(probabilities, np.float64)
    confidence = p.max(axis=1) if len(p) else np.zeros(0)
    correct = (p.argmax(axis=1) == np.asarray(labels)) if len(p) else np.zeros(0, bool)
    index = np.clip(np.ceil(confidence * bins).astype(np.int64) - 1, 0, bins - 1)
    counts = np.bincount(index, minlength=bins)
    with np.errstate(invalid="ignore", divide="ignore"):
        conf = np.bincount(index, confidence, minlength=bins) / counts
        acc = np.bincount(index, correct.astype(np.float64), minlength=bins) / counts
    return Reliability(counts, conf, acc)


def expected_calibration_error(
    probabilities: np.ndarray, labels: np.ndarray, bins: int = BINS
) -> float:
    """ECE of `probabilities` (N, classes) against `labels`, over `bins` equal-width bins."""
    return reliability(probabilities, labels, bins).ece


def reliability_diagram(result: Reliability, what: str = "test images") -> Figure:
    """Accuracy per confidence bin (bars) and the bin's mean confidence (dots) beside the
    diagonal of perfect calibration, with the share of images in each bin below."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    width = 1.0 / result.bins
    left = np.arange(result.bins) * width
    used = result.counts > 0
    fig, (top, bottom) = plt.subplots(
        2,
        1,
        figsize=(5.5, 6),
        sharex=True,
        gridspec_kw={"height_ratios": [3, 1]},
        constrained_layout=True,
    )
    top.bar(
        left[used],
        result.accuracy[used],
        width,
        align="edge",
        edgecolor="black",
        label="accuracy in the bin",
    )
    top.plot(
        left[used] + width / 2,
        result.confidence[used],
        "o",
        color="tab:red",
        markersize=4,
        label="mean confidence in the bin",
    )
    top.plot([0, 1], [0, 1], "k--", linewidth=1, label="perfect calibration")
    top.set(
        ylabel="accuracy",
        ylim=(0, 1),
        title=f"Reliability: ECE {result.ece:.4f} on {result.samples:,} {what}",
    )
    top.legend(loc="upper left", fontsize=8)
    bottom.bar(left, result.counts / max(result.samples, 1), width, align="edge", color="grey")
    bottom.set(xlabel="confidence (top-class probability)", ylabel="share", xlim=(0, 1))
    bottom.set_yscale("log")
    return fig
