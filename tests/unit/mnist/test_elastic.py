"""Elastic distortion (`mnist.elastic`): its own distortion for every image, also where the
batch size is unknown while tracing (as in `fit`), nothing at inference, and none of it in a
saved model."""

from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from mnist import models
from mnist.elastic import ElasticDistortion


def _digits(n: int) -> np.ndarray:
    """`n` copies of one stroke: a vertical bar, 4 pixels wide, in a 28x28 image in [0, 1]."""
    image = np.zeros((28, 28, 1), np.float32)
    image[4:24, 12:16] = 1.0
    return np.repeat(image[None], n, axis=0)


def test_every_image_gets_its_own_distortion_when_the_batch_size_is_unknown():
    layer = ElasticDistortion(34.0, seed=0)
    traced = tf.function(
        lambda x: layer(x, training=True), input_signature=[tf.TensorSpec((None, 28, 28, 1))]
    )
    images = _digits(8)
    out = traced(images).numpy()
    moved = np.abs(out - images).mean(axis=(1, 2, 3))
    assert (moved > 0.01).all(), moved  # each image is bent
    distinct = {out[i].round(4).tobytes() for i in range(len(out))}
    assert len(distinct) == len(out)  # and no two alike (Keras' own layer copies the first)
    assert out.min() >= 0 and out.max() <= 1
    # a stroke bent (thinned or thickened where the field squeezes or stretches it), not
    # smeared away or multiplied
    ink = out.sum(axis=(1, 2, 3)) / images.sum(axis=(1, 2, 3))
    assert (np.abs(ink - 1) < 0.5).all(), ink


def test_it_passes_images_through_at_inference_and_at_strength_zero():
    images = _digits(4)
    assert np.array_equal(ElasticDistortion(34.0)(images), images)
    assert np.array_equal(ElasticDistortion(0.0)(images, training=True), images)


def test_the_same_seed_distorts_alike():
    images = _digits(4)
    first = ElasticDistortion(34.0, seed=3)(images, training=True)
    assert np.array_equal(first, ElasticDistortion(34.0, seed=3)(images, training=True))
    assert not np.array_equal(first, ElasticDistortion(34.0, seed=4)(images, training=True))


def test_a_saved_model_carries_no_augmentation(tmp_path):
    """A served model is loaded where this package may not be installed (mlflow's pyfunc)."""
    net = models.build("small", augment=True, elastic=34.0)
    assert any(isinstance(layer, ElasticDistortion) for layer in net.layers[0].layers)
    path = tmp_path / "model.keras"
    models.for_raw_pixels(net).save(path)
    saved = str(keras.saving.load_model(path).get_config())
    assert "ElasticDistortion" not in saved and "RandomRotation" not in saved


def test_it_is_simards_distortion_as_scipy_computes_it():
    """Gaussian-smoothed noise times alpha, bilinear resampling with zeros around the image."""
    from scipy.ndimage import gaussian_filter, map_coordinates

    rng = np.random.default_rng(0)
    image = rng.random((28, 28)).astype(np.float32)
    noise = rng.uniform(-1, 1, (1, 28, 28, 2)).astype(np.float32)
    ours = ElasticDistortion(34.0).distort(image[None, ..., None], noise).numpy()[0, ..., 0]
    dy, dx = (
        gaussian_filter(noise[0, ..., axis], 4.0, mode="constant", truncate=3.0) * 34.0
        for axis in (0, 1)
    )
    rows, cols = np.meshgrid(np.arange(28), np.arange(28), indexing="ij")
    scipy = map_coordinates(image, [rows + dy, cols + dx], order=1, mode="grid-constant")
    assert np.abs(ours - scipy).max() < 1e-5
