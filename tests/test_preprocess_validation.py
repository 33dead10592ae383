import numpy as np
import pytest

from mnist import preprocess
from mnist.data import Dataset, Split
from mnist.errors import MnistError
from mnist.preprocess import Arrays
from mnist.validation import ValidationError, validate


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


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_pixels_just_past_255_stay_out_of_range_until_validated(tmp_path, suffix):
    """255.00000000000003 is 255.0 in float32: inputs keep their width until validation."""
    from mnist import inference

    path = tmp_path / f"inputs{suffix}"
    pixels = np.full((1, 784), 255.00000000000003)
    if suffix == ".npy":
        np.save(path, pixels)
    else:
        path.write_text(",".join(["255.00000000000003"] * 784) + "\n")
    images, _ = inference.read_inputs([path])
    with pytest.raises(ValidationError, match="784 pixel"):
        validate({"input": Arrays(images[..., None], None)}, "fail", preprocess.RAW_RANGE)
