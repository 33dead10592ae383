"""Property-based: any body given to the JSON pixel parser ends in images or a one-line
MnistError, never another exception, however deeply nested."""

import json

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from app.serve.parsing import json_pixels
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


json_values = st.recursive(
    st.none() | st.booleans() | st.floats() | st.integers() | st.text(max_size=5),
    lambda children: (
        st.lists(children, max_size=5) | st.dictionaries(st.text(max_size=5), children, max_size=3)
    ),
    max_leaves=30,
)


@FAST
@given(st.binary(max_size=500) | json_values.map(lambda v: json.dumps(v).encode()))
def test_json_pixels_on_any_body(body):
    out = _one_line(json_pixels, body)
    assert out is None or (out.ndim == 3 and out.shape[1:] == (28, 28))


@pytest.mark.parametrize("depth", [10, 100_000])
def test_json_pixels_nested_deeply(depth):
    body = b"[" * depth + b"0" + b"]" * depth
    assert _one_line(json_pixels, body) is None
