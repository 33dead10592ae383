"""`mnist.idx`: IDX files written and read back, raw or gzip; damage named with the file."""

import gzip
import re

import numpy as np
import pytest

from mnist import idx
from mnist.errors import MnistError


@pytest.mark.parametrize("name", ["a-idx3-ubyte", "a-idx3-ubyte.gz"])
def test_idx_round_trip_raw_and_gzip(tmp_path, name):
    arr = np.arange(2 * 28 * 28, dtype=np.uint8).reshape(2, 28, 28)
    path = idx.write_idx(tmp_path / name, arr)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == name.endswith(".gz")
    np.testing.assert_array_equal(idx.read_idx(path, ndim=3), arr)


def _write(path, payload: bytes):
    path.write_bytes(payload)
    return path


@pytest.mark.parametrize(
    ("payload", "message"),
    [
        (b"", "file is empty"),
        # mtime=0: the same bytes, so the same test id, in every test process
        (gzip.compress(b"\x00\x00\x08\x01\x00\x00\x00\x05abcde", mtime=0)[:-8], "truncated"),
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
        idx.read_idx(path)
    assert str(path) in str(err.value)


def test_wrong_number_of_dimensions(tmp_path):
    path = idx.write_idx(tmp_path / "labels.gz", np.zeros((3, 28, 28), np.uint8))
    with pytest.raises(MnistError, match=r"expected 1 IDX dimensions, found 3"):
        idx.read_idx(path, ndim=1)
