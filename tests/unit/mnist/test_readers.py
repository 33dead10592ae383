"""`mnist.readers`: one reader per format (CSV, .npz, .npy), each naming the file and the
row, column or array in its errors."""

import numpy as np
import pytest

from mnist import readers
from mnist.errors import MnistError


def _csv(path, rows):
    path.write_text("\n".join(",".join(str(v) for v in row) for row in rows) + "\n")
    return path


def test_kaggle_csv_with_header(tmp_path):
    header = ["label", *[f"pixel{i}" for i in range(784)]]
    rows = [header, [7, *([0] * 783), 255], [3, *([12] * 784)]]
    split = readers.read_csv(_csv(tmp_path / "train.csv", rows))
    assert split.labels.tolist() == [7, 3]
    assert split.images.shape == (2, 28, 28) and split.images.dtype == np.uint8
    assert split.images[0, 27, 27] == 255


def test_csv_empty_cells_become_nan_for_validation(tmp_path):
    split = readers.read_csv(_csv(tmp_path / "t.csv", [[1, "", *([0] * 783)]]))
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
        readers.read_csv(path)
    assert str(path) in str(err.value)


def test_ragged_csv(tmp_path):
    path = tmp_path / "ragged.csv"
    path.write_text("1," + ",".join(["0"] * 784) + "\n2,0,0\n")
    with pytest.raises(MnistError, match="row 2 has 3 columns, expected 785"):
        readers.read_csv(path)


def test_npz_gives_the_arrays_asked_for_and_names_the_missing(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, x=np.zeros((2, 28, 28)), y=np.arange(2))
    assert readers.read_npz(path, ("y", "x"))["y"].tolist() == [0, 1]
    with pytest.raises(MnistError, match=r"a\.npz: missing array\(s\) labels, z \(found x, y\)"):
        readers.read_npz(path, ("x", "labels", "z"))


def test_npz_one_of_takes_the_first_present_else_the_first_array(tmp_path):
    path = tmp_path / "a.npz"
    np.savez(path, images=np.zeros(1), x=np.ones(1))
    assert list(readers.read_npz(path, one_of=("x_test", "x", "images"))) == ["x"]
    assert list(readers.read_npz(path, one_of=("x_test",))) == ["images"]
    np.savez(tmp_path / "empty.npz")
    with pytest.raises(MnistError, match=r"empty\.npz: no arrays in \.npz file"):
        readers.read_npz(tmp_path / "empty.npz", one_of=("x",))


@pytest.mark.parametrize("suffix", [".npz", ".npy"])
def test_a_file_that_is_not_numpy_is_one_line_naming_it(tmp_path, suffix):
    path = tmp_path / f"bad{suffix}"
    path.write_bytes(b"not numpy at all")
    read = readers.read_npz if suffix == ".npz" else readers.read_npy
    with pytest.raises(MnistError, match=rf"bad\{suffix}: not a readable \{suffix} file") as err:
        read(path)
    assert "\n" not in str(err.value)
