"""`mnist.models`: every architecture builds and outputs probabilities; raw pixels in."""

import numpy as np
import pytest

from mnist import models, preprocess
from mnist.errors import MnistError


@pytest.mark.parametrize("name", sorted(models.ARCHITECTURES))
def test_architectures_build_and_output_probabilities(name):
    net = models.build(name)
    out = np.asarray(net(np.zeros((2, 28, 28, 1), np.float32)))
    assert out.shape == (2, 10)
    np.testing.assert_allclose(out.sum(axis=1), 1.0, rtol=1e-5)


def test_reference_is_the_keras_simple_convnet():
    assert models.build("reference").count_params() == 34826


def test_unknown_architecture():
    with pytest.raises(MnistError, match="unknown model 'vgg'; choose one of: cnn, reference"):
        models.build("vgg")


def test_raw_pixel_wrapper_scales_inside_the_model(mnist_data):
    net = models.build("small")
    raw = mnist_data.test.images[:8]
    wrapped = models.for_raw_pixels(net)
    np.testing.assert_allclose(
        np.asarray(wrapped(raw.astype(np.float32))),
        np.asarray(net(preprocess.scale(raw))),
        rtol=1e-5,
        atol=1e-6,
    )
