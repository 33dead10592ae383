"""`mnist.plots`: the run's three figures render to PNG."""

import numpy as np
import pandas as pd
from PIL import Image
from sklearn.metrics import confusion_matrix

from mnist import evaluation, plots


def _evaluation(labels, predicted):
    probabilities = np.eye(10, dtype=np.float32)[predicted] * 0.9 + 0.01
    return evaluation.Evaluation(
        loss=0.1,
        accuracy=float(np.mean(labels == predicted)),
        samples=len(labels),
        probabilities=probabilities,
        labels=np.asarray(labels),
        confusion=confusion_matrix(labels, predicted, labels=range(10)),
    )


def test_figures_render_to_png(tmp_path, mnist_data):
    labels = mnist_data.test.labels[:40].astype(int)
    predicted = labels.copy()
    predicted[[3, 7]] = (predicted[[3, 7]] + 1) % 10
    result = _evaluation(labels, predicted)
    history = pd.DataFrame(
        {
            "epoch": [1, 2, 3],
            "accuracy": [0.9, 0.95, 0.97],
            "loss": [0.3, 0.2, 0.1],
            "val_accuracy": [0.92, 0.96, 0.97],
            "val_loss": [0.25, 0.15, 0.12],
        }
    )
    figures = plots.all_figures(history, mnist_data.test.images[:40] / 255.0, result)
    assert set(figures) == {"training_curves.png", "predictions.png", "confusion_matrix.png"}
    assert "2 of 25 shown are mistakes" in figures["predictions.png"]._suptitle.get_text()
    for name, fig in figures.items():
        fig.savefig(tmp_path / name)
        with Image.open(tmp_path / name) as img:
            assert img.width > 400 and img.height > 300
