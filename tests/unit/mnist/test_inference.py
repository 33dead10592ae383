"""`mnist.inference`: inputs of every format read at full width, checked before predicting."""

import numpy as np
import pytest

from mnist import inference, preprocess
from mnist.preprocess import Arrays
from mnist.validation import ValidationError, validate


@pytest.mark.parametrize("suffix", [".npy", ".csv"])
def test_pixels_just_past_255_stay_out_of_range_until_validated(tmp_path, suffix):
    """255.00000000000003 is 255.0 in float32: inputs keep their width until validation."""
    path = tmp_path / f"inputs{suffix}"
    pixels = np.full((1, 784), 255.00000000000003)
    if suffix == ".npy":
        np.save(path, pixels)
    else:
        path.write_text(",".join(["255.00000000000003"] * 784) + "\n")
    images, _ = inference.read_inputs([path])
    with pytest.raises(ValidationError, match="784 pixel"):
        validate({"input": Arrays(images[..., None], None)}, "fail", preprocess.RAW_RANGE)


def test_npz_inputs_are_its_x_test_else_x_else_images_named_by_row(tmp_path):
    np.savez(tmp_path / "a.npz", images=np.zeros((1, 784)), x=np.full((2, 28, 28), 7.0))
    np.savez(tmp_path / "b.npz", y=np.full((1, 28, 28), 3.0))  # no known name: its first
    images, names = inference.read_inputs([tmp_path / "a.npz", tmp_path / "b.npz"])
    assert images[:, 0, 0].tolist() == [7.0, 7.0, 3.0]
    assert names == [f"{tmp_path / 'a.npz'}[{i}]" for i in (0, 1)] + [f"{tmp_path / 'b.npz'}[0]"]
