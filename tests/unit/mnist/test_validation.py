"""`mnist.validation`: NaN, Inf, range, shape and count checks under each policy."""

import numpy as np
import pytest

from mnist import preprocess
from mnist.data import Dataset, Split
from mnist.errors import MnistError
from mnist.preprocess import Arrays
from mnist.validation import ValidationError, validate


def _arrays(n=20, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.random((n, 28, 28, 1), dtype=np.float32)
    return Arrays(x, preprocess.one_hot(rng.integers(0, 10, n)))


def _dirty():
    a = _arrays()
    a.x[1, 0, 0, 0] = np.nan
    a.x[1, 0, 1, 0] = np.nan
    a.x[4, 3, 3, 0] = np.inf
    a.x[6, 3, 3, 0] = -np.inf
    a.x[8, 5, 5, 0] = 1.5
    a.y[10] = 0  # a label outside 0-9
    return a


def test_clean_data_passes_untouched():
    a = _arrays()
    splits, report = validate({"train": a})
    assert splits["train"] is a and report.problems == 0


def test_fail_policy_counts_everything_and_names_the_source():
    with pytest.raises(ValidationError) as err:
        validate({"train": _dirty()}, "fail", sources={"train": "data/train.csv"})
    r = err.value.report.splits["train"]
    assert (r.nan, r.posinf, r.neginf, r.out_of_range, r.invalid_labels) == (2, 1, 1, 1, 1)
    assert r.bad_samples == 5 and r.first_bad_indices == [1, 4, 6, 8, 10]
    message = str(err.value)
    assert "data/train.csv" in message and "2 NaN pixel(s)" in message
    assert "--nan-policy" in message


def test_drop_policy_removes_bad_samples():
    splits, report = validate({"train": _dirty()}, "drop")
    assert len(splits["train"]) == 15
    assert report.splits["train"].dropped == 5
    assert report.metrics()["validation.train.nan"] == 2.0
    assert not np.isnan(splits["train"].x).any()


def test_impute_policy_repairs_pixels_and_drops_only_bad_labels():
    splits, report = validate({"train": _dirty()}, "impute")
    x = splits["train"].x
    assert len(x) == 19 and report.splits["train"].imputed == 4
    assert np.isfinite(x).all() and x.min() >= 0 and x.max() <= 1
    assert x[1, 0, 0, 0] == 0.0 and x[4, 3, 3, 0] == 1.0 and x[8, 5, 5, 0] == 1.0


@pytest.mark.parametrize("policy", ["fail", "drop", "impute"])
def test_shape_and_count_problems_always_fail(policy):
    wrong_shape = Arrays(np.zeros((3, 27, 27, 1), np.float32), preprocess.one_hot([1, 2, 3]))
    with pytest.raises(ValidationError, match=r"shape \(27, 27, 1\)"):
        validate({"test": wrong_shape}, policy)
    mismatch = Arrays(np.zeros((3, 28, 28, 1), np.float32), preprocess.one_hot([1, 2]))
    with pytest.raises(ValidationError, match="3 images but 2 labels"):
        validate({"test": mismatch}, policy)


def test_count_mismatch_from_raw_data_reaches_validation():
    raw = Dataset(
        Split(np.zeros((10, 28, 28), np.uint8), np.zeros(9, np.uint8), "train.gz"),
        Split(np.zeros((4, 28, 28), np.uint8), np.zeros(4, np.uint8), "test.gz"),
    )
    p = preprocess.prepare(raw, 0.1, seed=0)
    with pytest.raises(ValidationError, match=r"train \(train.gz\): 10 images but 9 labels"):
        validate(p.splits(), "drop", sources={"train": "train.gz"})


def test_everything_dropped_is_an_error():
    a = _arrays(3)
    a.x[:] = np.nan
    with pytest.raises(ValidationError, match="no valid samples left in train"):
        validate({"train": a}, "drop")


def test_unknown_policy():
    with pytest.raises(MnistError, match="unknown NaN policy 'skip'"):
        validate({"train": _arrays()}, "skip")
