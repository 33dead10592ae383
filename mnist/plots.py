"""Matplotlib figures: training curves, a grid of predictions, the confusion matrix."""

from __future__ import annotations

import matplotlib

matplotlib.use("Agg")

import matplotlib.pyplot as plt
import numpy as np
import pandas as pd
from matplotlib.colors import SymLogNorm
from matplotlib.figure import Figure

from mnist.evaluation import Evaluation


def training_curves(history: pd.DataFrame) -> Figure:
    """Accuracy and loss per epoch, training and validation."""
    fig, axes = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    for ax, metric in zip(axes, ("accuracy", "loss"), strict=True):
        ax.plot(history["epoch"], history[metric], "o-", label=f"training {metric}")
        if f"val_{metric}" in history:
            ax.plot(history["epoch"], history[f"val_{metric}"], "s-", label=f"validation {metric}")
        ax.set(xlabel="epoch", ylabel=metric, title=metric.capitalize())
        ax.grid(alpha=0.3)
        ax.legend()
        ax.xaxis.get_major_locator().set_params(integer=True)
    return fig


def prediction_grid(images: np.ndarray, result: Evaluation, count: int = 25) -> Figure:
    """`count` test images with true and predicted labels; up to 40% of them are mistakes,
    marked in red, so the figure shows what the model gets wrong as well as right."""
    predicted = result.predicted
    wrong = np.flatnonzero(predicted != result.labels)[: int(count * 0.4)]
    right = np.flatnonzero(predicted == result.labels)[: count - len(wrong)]
    shown = np.sort(np.concatenate([wrong, right]))
    side = int(np.ceil(np.sqrt(len(shown)))) or 1
    fig, axes = plt.subplots(side, side, figsize=(1.9 * side, 2.1 * side), constrained_layout=True)
    for ax in np.ravel(axes):
        ax.axis("off")
    for ax, i in zip(np.ravel(axes), shown, strict=False):
        ok = predicted[i] == result.labels[i]
        ax.imshow(images[i].reshape(28, 28), cmap="gray")
        ax.set_title(
            f"#{i} true {result.labels[i]}\n"
            f"pred {predicted[i]} ({result.probabilities[i].max():.0%})",
            color="black" if ok else "red",
            fontsize=9,
            fontweight="normal" if ok else "bold",
        )
        if not ok:
            for spine in ax.spines.values():
                spine.set(visible=True, color="red", linewidth=2)
            ax.axis("on")
            ax.set_xticks([])
            ax.set_yticks([])
    fig.suptitle(f"Test predictions ({len(wrong)} of {len(shown)} shown are mistakes, in red)")
    return fig


def confusion_matrix(result: Evaluation, what: str = "test images") -> Figure:
    """Counts of true (rows) against predicted (columns) digits, on a log colour scale."""
    cm = result.confusion
    fig, ax = plt.subplots(figsize=(7, 6), constrained_layout=True)
    image = ax.imshow(cm, cmap="Blues", norm=SymLogNorm(1, vmin=0))
    fig.colorbar(image, ax=ax, label="images")
    for (i, j), n in np.ndenumerate(cm):
        if n:
            ax.text(
                j,
                i,
                n,
                ha="center",
                va="center",
                fontsize=8,
                color="white" if n > cm.max() / 10 else "black",
            )
    ax.set(
        xticks=range(10),
        yticks=range(10),
        xlabel="predicted digit",
        ylabel="true digit",
        title=f"Confusion matrix ({result.samples} {what}, accuracy {result.accuracy:.2%})",
    )
    return fig


def all_figures(
    history: pd.DataFrame, images: np.ndarray, result: Evaluation, holdout: Evaluation | None = None
) -> dict[str, Figure]:
    """Every figure of a run, by file name; the added data's holdout has its own matrix."""
    figures = {
        "training_curves.png": training_curves(history),
        "predictions.png": prediction_grid(images, result),
        "confusion_matrix.png": confusion_matrix(result),
    }
    if holdout is not None:
        figures["confusion_matrix_holdout.png"] = confusion_matrix(holdout, "added holdout images")
    return figures
