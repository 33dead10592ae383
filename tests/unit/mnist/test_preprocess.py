"""`mnist.preprocess`: scaling, one-hot labels, the seeded stratified split, `prepare`."""

import numpy as np

from mnist import preprocess


def test_scale_and_one_hot():
    x = preprocess.scale(np.full((3, 28, 28), 255, np.uint8))
    assert x.shape == (3, 28, 28, 1) and x.dtype == np.float32 and x.max() == 1.0
    y = preprocess.one_hot(np.array([0, 9, 12]))
    assert y.tolist()[0][0] == 1 and y[1, 9] == 1 and y[2].sum() == 0  # 12: all-zero row


def test_stratified_split_is_seeded_and_stratified(mnist_data):
    labels = mnist_data.train.labels
    a_train, a_val = preprocess.stratified_split(labels, 0.1, seed=1)
    b_train, b_val = preprocess.stratified_split(labels, 0.1, seed=1)
    _, c_val = preprocess.stratified_split(labels, 0.1, seed=2)
    np.testing.assert_array_equal(a_val, b_val)
    np.testing.assert_array_equal(a_train, b_train)
    assert not np.array_equal(a_val, c_val)
    assert len(np.intersect1d(a_train, a_val)) == 0 and len(a_train) + len(a_val) == 60000
    share = np.bincount(labels[a_val], minlength=10) / np.bincount(labels, minlength=10)
    assert np.allclose(share, 0.1, atol=0.001)


def test_prepare_limits_and_splits(mnist_data):
    p = preprocess.prepare(mnist_data, 0.2, seed=0, train_limit=1000, test_limit=100)
    expected_val = sum(round(n * 0.2) for n in np.bincount(mnist_data.train.labels[:1000]))
    assert (len(p.train), len(p.val), len(p.test)) == (1000 - expected_val, expected_val, 100)
    assert abs(expected_val - 200) <= 5
    assert p.train.y.shape == (len(p.train), 10)
