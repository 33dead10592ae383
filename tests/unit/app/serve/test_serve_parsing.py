"""`app.serve.parsing` on its own: the JSON shapes /predict takes, and the one-line refusal of
each body it cannot use."""

from __future__ import annotations

import json
import re

import numpy as np
import pytest

from app.serve import RequestError
from app.serve.parsing import check, json_pixels
from mnist.errors import MnistError


@pytest.mark.parametrize(
    "body",
    [
        {"pixels": np.ones((28, 28)).tolist()},
        {"pixels": [[1.0] * 784]},
        {"inputs": np.ones((2, 28, 28)).tolist()},
        {"instances": [[1] * 784] * 3},
        [[1] * 784],
    ],
    ids=["one square", "one flat", "inputs", "instances", "bare array"],
)
def test_every_json_shape_becomes_images_of_28_by_28(body):
    images = json_pixels(json.dumps(body).encode())
    assert images.shape[1:] == (28, 28) and images.dtype == np.float64
    assert (images == 1).all()


@pytest.mark.parametrize(
    ("body", "status", "message"),
    [
        (b"{pixels", 400, "not valid JSON"),
        (b"[" * 100_000, 400, "not valid JSON"),
        (b'{"image": 1}', 422, '"pixels" (or "inputs") array'),
        (b'{"pixels": []}', 422, "no pixels given"),
        (b'{"pixels": [[true, 0]]}', 422, "not true or false"),
        (b'{"pixels": [[0, 1], [0]]}', 422, "regular array of numbers"),
        (b'{"pixels": [[0, 1]]}', 422, "shape"),
    ],
)
def test_a_body_it_cannot_use_is_a_one_line_error_with_its_status(body, status, message):
    with pytest.raises(MnistError, match=re.escape(message)) as refused:
        json_pixels(body)
    assert getattr(refused.value, "status", 422) == status  # a plain MnistError answers 422
    assert "\n" not in str(refused.value)


def test_the_check_refuses_nan_inf_and_pixels_past_255():
    check(np.full((1, 28, 28), 255.0))
    for bad, message in ((np.nan, "NaN"), (np.inf, "Inf"), (255.00000000000003, "outside")):
        pixels = np.zeros((1, 28, 28))
        pixels[0, 3, 3] = bad
        with pytest.raises(RequestError, match=message):
            check(pixels)
