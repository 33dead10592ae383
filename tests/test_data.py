import gzip
import re

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
    scaled = train.images / 255.0
    assert scaled.mean() == pytest.approx(0.1307, abs=1e-4)
    assert scaled.std() == pytest.approx(0.3081, abs=1e-4)


def test_digest_is_stable_and_sensitive(mnist_data):
    assert len(mnist_data.digest) == 64
    images = mnist_data.test.images.copy()
    images[0, 0, 0] ^= 1
    other = data.Dataset(mnist_data.train, data.Split(images, mnist_data.test.labels, "x"))
    assert other.digest != mnist_data.digest


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip_raw_and_gzip(tmp_path, name):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = data.write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(data.read_idx(path, ndim=3), arr)


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "file is empty"),
        (gzip.compress(b"\x00\x00\x08\x01" + b"\x00\x00\x00\x05" + b"abcde")[:-8], "truncated"),
        (b"\x1f\x8bnot really gzip", "corrupt gzip"),
        (b"\x12\x34\x08\x01\x00\x00\x00\x01\x07", "not an IDX file (magic number 0x12340801)"),
        (
            b"\x00\x00\x08\x03\x00\x00\x00\x02\x00\x00\x00\x1c\x00\x00\x00\x1c" + b"\x00" * 10,
            "need 1568 bytes of data, file has 10",
        ),
    ],
)
def test_damaged_idx_files_name_file_and_problem(tmp_path, payload, message):
    path = _write(tmp_path / "train-images-idx3-ubyte.gz", payload)
    with pytest.raises(MnistError, match=re.escape(message)) as err:
        data.read_idx(path)
    assert str(path) in str(err.value)


def test_wrong_number_of_dimensions(tmp_path):
    path = data.write_idx(tmp_path / "labels.gz", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(MnistError, match=r"expected 1 IDX dimensions, found 3"):
        data.read_idx(path, ndim=1)


def test_idx_directory_missing_file(tmp_path):
    with pytest.raises(MnistError, match=r"missing train-images-idx3-ubyte\.gz"):
        data.load_idx_dir(tmp_path)


def _csv(path, rows):
    path.write_text("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


def test_kaggle_csv_with_header(tmp_path):
    header = ["label", *[f"pixel{i}" for i in range(784)]]
    rows = [header, [7, *([0] * 783), 255], [3, *([12] * 784)]]
    split = data.read_csv(_csv(tmp_path / "train.csv", rows))
    assert split.labels.tolist() == [7, 3]
    assert split.images.shape == (2, 28, 28) and split.images.dtype == np.uint8
    assert split.images[0, 27, 27] == 255


def test_csv_empty_cells_become_nan_for_validation(tmp_path):
    split = data.read_csv(_csv(tmp_path / "t.csv", [[1, "", *([0] * 783)]]))
    assert np.isnan(split.images).sum() == 1


@pytest.mark.parametrize(
    ("rows", "message"),
    [
        ([[1, "x", *([0] * 783)]], r"1 non-numeric cell\(s\), first at row 1, column 2: 'x'"),
        ([[1, *([0] * 700)]], "row 1 has 701 columns, expected 785"),
        ([["", *([0] * 784)]], "1 row\\(s\\) with an empty label"),
    ],
)
def test_bad_csv_names_file_and_cell(tmp_path, rows, message):
    path = _csv(tmp_path / "bad.csv", rows)
    with pytest.raises(MnistError, match=message) as err:
        data.read_csv(path)
    assert str(path) in str(err.value)


def test_ragged_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("1," + ",".join(["0"] * 784) + "\n2,0,0\n")
    with pytest.raises(MnistError, match="row 2 has 3 columns, expected 785"):
        data.read_csv(path)


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
