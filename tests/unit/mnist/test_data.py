"""`mnist.data`: the real MNIST as read, its digest, and `load` finding each layout."""

import numpy as np
import pytest

from mnist import data
from mnist.errors import MnistError


def test_real_mnist_matches_its_readme(mnist_data):
    train, test = mnist_data.train, mnist_data.test
    assert train.images.shape == (60000, 28, 28) and train.images.dtype == np.uint8
    assert test.images.shape == (10000, 28, 28)
    assert train.labels[:10].tolist() == [5, 0, 4, 1, 9, 2, 1, 3, 1, 4]
    assert np.bincount(train.labels).tolist() == [
        5923,
        6742,
        5958,
        6131,
        5842,
        5421,
        5918,
        6265,
        5851,
        5949,
    ]
    assert np.bincount(test.labels).tolist() == [
        980,
        1135,
        1032,
        1010,
        982,
        892,
        958,
        1028,
        974,
        1009,
    ]
    assert train.images.mean(dtype=np.float64) / 255 == pytest.approx(0.1307, abs=1e-4)
    assert train.images.std(dtype=np.float64) / 255 == pytest.approx(0.3081, abs=1e-4)


def test_digest_is_stable_and_sensitive(mnist_data):
    assert len(mnist_data.digest) == 64
    images = mnist_data.test.images.copy()
    images[0, 0, 0] ^= 1
    other = data.Dataset(mnist_data.train, data.Split(images, mnist_data.test.labels, "x"))
    assert other.digest != mnist_data.digest


def test_idx_directory_missing_file(tmp_path):
    with pytest.raises(MnistError, match=r"missing train-images-idx3-ubyte\.gz"):
        data.load_idx_dir(tmp_path)


def test_npz_and_load_dispatch(tmp_path, mnist_data):
    arrays = {
        "x_train": mnist_data.train.images[:50],
        "y_train": mnist_data.train.labels[:50],
        "x_test": mnist_data.test.images[:20],
        "y_test": mnist_data.test.labels[:20],
    }
    np.savez(tmp_path / "mnist.npz", **arrays)
    for where in (tmp_path, tmp_path / "mnist.npz"):
        loaded = data.load(where)
        np.testing.assert_array_equal(loaded.train.images, arrays["x_train"])
        np.testing.assert_array_equal(loaded.test.labels, arrays["y_test"])


def test_npz_missing_arrays(tmp_path):
    np.savez(tmp_path / "mnist.npz", x_train=np.zeros((1, 28, 28)))
    with pytest.raises(MnistError, match="missing array\\(s\\) y_train, x_test, y_test"):
        data.load(tmp_path / "mnist.npz")


def test_offline_without_data_names_directory_and_variable(tmp_path, monkeypatch):
    monkeypatch.setenv("MNIST_MIRRORS", "http://127.0.0.1:9/")  # nothing listens on port 9
    empty = tmp_path / "nothing-here"
    with pytest.raises(MnistError) as err:
        data.load(empty)
    assert str(empty) in str(err.value)
    assert "MNIST_DATA_DIR" in str(err.value)
    assert not empty.exists() or not any(empty.iterdir())
