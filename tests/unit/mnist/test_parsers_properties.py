"""Property-based: any bytes given to a parser end in a result or a one-line MnistError, never
another exception; images prepared MNIST-style stay inside 0-255."""

import io

import numpy as np
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from PIL import Image

from mnist import digits, idx, readers
from mnist.errors import MnistError

FAST = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)


def _one_line(call, *args):
    try:
        return call(*args)
    except MnistError as exc:
        assert str(exc) and "\n" not in str(exc)
        return None


@FAST
@given(st.binary(max_size=2000))
def test_idx_parser_on_any_bytes(raw):
    out = _one_line(idx.parse_idx, raw, "x.idx")
    assert out is None or isinstance(out, np.ndarray)


@FAST
@given(st.binary(min_size=4, max_size=64).map(lambda b: b"\x00\x00\x08\x01" + b))
def test_idx_parser_on_idx_shaped_bytes(raw):
    out = _one_line(idx.parse_idx, raw, "x.idx")
    assert out is None or out.ndim == 1


@FAST
@given(st.binary(max_size=3000))
def test_image_decoder_on_any_bytes(raw):
    out = _one_line(digits.from_image_bytes, raw, "upload")
    assert out is None or out.shape == (28, 28)


def _png(pixels: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    Image.fromarray(pixels).save(buffer, format="PNG")
    return buffer.getvalue()


@FAST
@given(arrays(np.uint8, st.tuples(st.integers(1, 60), st.integers(1, 60))))
def test_mnist_style_stays_in_range(pixels):
    out = _one_line(digits.from_image_bytes, _png(pixels), "photo")
    if out is not None:
        assert out.shape == (28, 28) and out.min() >= 0 and out.max() <= 255


@FAST
@given(st.binary(max_size=4000))
def test_csv_reader_on_any_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("csv") / "rows.csv"
    path.write_bytes(raw)
    out = _one_line(readers.read_csv, path)
    assert out is None or len(out.images) == len(out.labels)


@FAST
@given(st.binary(max_size=2000) | st.binary(max_size=200).map(lambda b: b"PK\x03\x04" + b))
def test_npz_reader_on_any_bytes(tmp_path_factory, raw):
    path = tmp_path_factory.mktemp("npz") / "arrays.npz"
    path.write_bytes(raw)
    out = _one_line(readers.read_npz, path, (), ("x",))
    assert out is None or len(out) == 1
