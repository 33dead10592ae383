"""`mnist.intake`: labelled samples read from images and arrays, prepared and checked."""

import numpy as np
import pytest
from PIL import Image

from mnist import intake
from mnist.errors import MnistError


def test_images_are_prepared_like_predict_inputs(tmp_path, mnist_data):
    seven = tmp_path / "seven.png"  # a dark digit on white paper, 8 times MNIST's size
    Image.fromarray(255 - mnist_data.train.images[0]).resize((224, 224)).save(seven)
    found = intake.read([seven], label=7)
    image = found.images[0]
    assert image.shape == (28, 28) and image.max() == pytest.approx(255, abs=1)
    assert image[0].max() == 0  # a dark digit on white, inverted and centred like MNIST
    assert found.counts()[7] == 1


def test_npz_labels_must_be_one_number_per_image(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 28, 28)), y=np.zeros((3, 2)))
    with pytest.raises(MnistError, match=r"'y' must hold one number per image \(3\)"):
        intake.read([tmp_path / "bad.npz"])
    np.savez(tmp_path / "half.npz", x=np.full((2, 28, 28), 9.0), y=np.array([3.5, 2]))
    found = intake.read([tmp_path / "half.npz"], policy="drop")
    assert found.labels.tolist() == [2] and "label(s) outside 0-9" in found.rejected[0][1]
