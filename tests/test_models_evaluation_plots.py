import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from PIL import Image
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mnist import evaluation, models, plots, preprocess
from mnist.errors import MnistError


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_architectures_build_and_output_probabilities(name):
    net = models.build(name)
    out = np.asarray(net(np.zeros((2, 28, 28, 1), np.float32)))
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_reference_is_the_keras_simple_convnet():
    assert models.build("reference").count_params() == 34826


def test_unknown_architecture():
    with pytest.raises(MnistError, match="unknown model 'vgg'; choose one of: cnn, reference"):
        models.build("vgg")


def test_raw_pixel_wrapper_scales_inside_the_model(mnist_data):
    net = models.build("small")
    raw = mnist_data.test.images[:8]
    wrapped = models.for_raw_pixels(net)
    np.testing.assert_allclose(
        np.asarray(wrapped(raw.astype(np.float32))),
        np.asarray(net(preprocess.scale(raw))),
        rtol=1e-5,
        atol=1e-6,
    )


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


def test_per_class_metrics():
    labels = np.array([0, 0, 1, 1, 2, 2, 2, 3])
    predicted = np.array([0, 1, 1, 1, 2, 2, 0, 3])
    table = _evaluation(labels, predicted).per_class().set_index("digit")
    assert table.loc[0, "precision"] == pytest.approx(0.5)
    assert table.loc[1, "recall"] == pytest.approx(1.0)
    assert table.loc[2, "recall"] == pytest.approx(round(2 / 3, 4))
    assert table.loc[2, "support"] == 3 and table.loc[9, "support"] == 0


digits = st.lists(st.tuples(st.integers(0, 9), st.integers(0, 9)), min_size=1, max_size=200)


@given(digits)
def test_metrics_agree_with_scikit_learn(pairs):
    labels, predicted = (np.array(column) for column in zip(*pairs, strict=True))
    mine = evaluation.confusion_matrix(labels, predicted)
    np.testing.assert_array_equal(mine, confusion_matrix(labels, predicted, labels=range(10)))
    table = _evaluation(labels, predicted).per_class()
    p, r, f, s = precision_recall_fscore_support(
        labels, predicted, labels=range(10), zero_division=0
    )
    np.testing.assert_allclose(
        table[["precision", "recall", "f1"]].to_numpy(),
        np.round(np.stack([p, r, f], axis=1), 4),
        atol=1e-12,
    )
    np.testing.assert_array_equal(table["support"], s)


def test_evaluate_a_model_on_real_images(mnist_data):
    test = preprocess.prepare(mnist_data, 0.1, 0, train_limit=10, test_limit=300).test
    result = evaluation.evaluate(models.build("small"), test)
    assert result.samples == 300 and result.confusion.sum() == 300
    assert result.loss == pytest.approx(
        -np.mean(np.log(result.probabilities[np.arange(300), test.labels])), rel=1e-4
    )
    assert result.accuracy == pytest.approx(np.trace(result.confusion) / 300)


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
