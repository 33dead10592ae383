"""`mnist.evaluation`: per-class metrics, agreeing with scikit-learn; a model on real images."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from mnist import evaluation, models, preprocess


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
