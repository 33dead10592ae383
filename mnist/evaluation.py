"""Test metrics: loss, accuracy, per-class precision/recall/F1 and the confusion matrix."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np

from mnist import mnist_pyfunc
from mnist.preprocess import NUM_CLASSES, Arrays

if TYPE_CHECKING:
    import keras
    import pandas as pd


@dataclass(frozen=True)
class Evaluation:
    """A model's results on one labelled split."""

    loss: float
    accuracy: float
    samples: int
    probabilities: np.ndarray  # (N, 10)
    labels: np.ndarray  # (N,) true digits
    confusion: np.ndarray  # (10, 10): rows true, columns predicted
    groups: np.ndarray | None = None  # (N,) each sample's source, where a split mixes several

    @property
    def predicted(self) -> np.ndarray:
        return self.probabilities.argmax(axis=1)

    def per_class(self) -> pd.DataFrame:
        """Precision, recall, F1 and support for each digit (0 where undefined, as
        scikit-learn's `zero_division=0`), from the confusion matrix."""
        import pandas as pd

        hits = np.diag(self.confusion).astype(np.float64)
        support, claimed = self.confusion.sum(axis=1), self.confusion.sum(axis=0)
        with np.errstate(divide="ignore", invalid="ignore"):
            p = np.where(claimed > 0, hits / claimed, 0.0)
            r = np.where(support > 0, hits / support, 0.0)
            f = np.where(p + r > 0, 2 * p * r / (p + r), 0.0)
        table = pd.DataFrame(
            {"digit": range(NUM_CLASSES), "precision": p, "recall": r, "f1": f, "support": support}
        )
        return table.round({"precision": 4, "recall": 4, "f1": 4})

    def group_accuracy(self) -> dict[str, float]:
        """Accuracy per source, where the split has several."""
        if self.groups is None or len(set(self.groups)) < 2:
            return {}
        hits = self.predicted == self.labels
        return {str(g): float(hits[self.groups == g].mean()) for g in sorted(set(self.groups))}

    def metrics(self, split: str = "test") -> dict[str, float]:
        """`test_loss`, `test_accuracy`, `test_samples` (for split `test`), and the accuracy of
        each source: `holdout_accuracy.SOURCE`."""
        by_group = {f"{split}_accuracy.{g}": a for g, a in self.group_accuracy().items()}
        return {
            f"{split}_loss": self.loss,
            f"{split}_accuracy": self.accuracy,
            f"{split}_samples": float(self.samples),
            **by_group,
        }


def predict_proba(model: keras.Model, x: np.ndarray) -> np.ndarray:
    """Probabilities (N, 10), as the logged model's pyfunc loader computes them."""
    return mnist_pyfunc.probabilities(model, x)


def confusion_matrix(labels: np.ndarray, predicted: np.ndarray) -> np.ndarray:
    """(10, 10) counts, rows true digits, columns predicted ones. NumPy, not scikit-learn:
    importing scikit-learn's metrics costs 1.4 s of every training command."""
    pairs = np.asarray(labels, np.int64) * NUM_CLASSES + np.asarray(predicted, np.int64)
    return np.bincount(pairs, minlength=NUM_CLASSES**2).reshape(NUM_CLASSES, NUM_CLASSES)


def evaluate(model: keras.Model, data: Arrays) -> Evaluation:
    """Evaluate `model` on a labelled split of model-ready arrays."""
    probabilities = predict_proba(model, data.x)
    labels = data.labels
    eps = 1e-7
    loss = float(-np.mean(np.log(np.clip(probabilities[np.arange(len(labels)), labels], eps, 1))))
    accuracy = float(np.mean(probabilities.argmax(axis=1) == labels))
    confusion = confusion_matrix(labels, probabilities.argmax(axis=1))
    return Evaluation(loss, accuracy, len(labels), probabilities, labels, confusion, data.groups)
