"""Elastic distortion of digit images (Simard, Steinkraus and Platt, 2003), a training-only layer.

Each image gets its own random displacement field: uniform noise in [-1, 1] per pixel and axis,
smoothed by a Gaussian of `sigma` pixels and scaled by `alpha`; the image is resampled at the
displaced points (bilinear, zero outside). It bends strokes the way hands vary, which shifts,
rotations and zoom cannot. At inference the layer passes images through unchanged.

Keras' own `RandomElasticTransform` (3.15) was not usable here: it draws the same noise for both
axes, one strength per batch, and, where the batch size is unknown while tracing (as in `fit`),
gives every image of a batch the first image's distortion.
"""

from __future__ import annotations

import math
from typing import Any

import keras
import numpy as np
from keras import layers

ops: Any = keras.ops  # its types, inferred from the code, have most ops return None too

SIGMA = 4.0
"""Pixels of smoothing of the displacement field: Simard et al.'s value for 28x28 digits."""


class ElasticDistortion(layers.Layer):
    """Random elastic distortion of (N, H, W, 1) images, in training only.

    Not registered with Keras: a registered class puts a pickle of Keras' custom objects into
    every model MLflow saves, which the audit of logged models refuses. No saved model holds
    this layer (`models.for_raw_pixels` leaves augmentation out)."""

    def __init__(self, alpha: float, sigma: float = SIGMA, seed: int | None = None, **kwargs):
        super().__init__(**kwargs)
        self.alpha, self.sigma, self.seed = float(alpha), float(sigma), seed
        self.seed_generator = keras.random.SeedGenerator(seed)
        radius = max(1, math.ceil(3 * sigma))
        taps = np.exp(-0.5 * (np.arange(-radius, radius + 1) / sigma) ** 2)
        taps = (taps / taps.sum()).astype("float32")
        # a separable blur of both displacement channels: a column kernel, then a row kernel
        self._down = np.tile(taps[:, None, None, None], (1, 1, 2, 1))
        self._across = np.tile(taps[None, :, None, None], (1, 1, 2, 1))

    def call(self, images, training=False):
        if not training or self.alpha == 0:
            return images
        shape = (*ops.shape(images)[:3], 2)  # a displacement per pixel and axis
        noise = keras.random.uniform(shape, -1.0, 1.0, seed=self.seed_generator)
        return self.distort(images, noise)

    def distort(self, images, noise):
        """`images` moved by the field that `noise` (N, H, W, 2) in [-1, 1] makes."""
        n, h, w = ops.shape(images)[:3]
        field = ops.depthwise_conv(noise, self._down, padding="same")
        field = ops.depthwise_conv(field, self._across, padding="same") * self.alpha
        ys = ops.cast(ops.arange(h), "float32")[None, :, None] + field[..., 0]
        xs = ops.cast(ops.arange(w), "float32")[None, None, :] + field[..., 1]
        y0, x0 = ops.floor(ys), ops.floor(xs)
        wy, wx = ys - y0, xs - x0
        y0, x0 = ops.cast(y0, "int32"), ops.cast(x0, "int32")
        pixels = ops.reshape(ops.cast(images, "float32"), (-1,))
        first = (ops.arange(n) * h * w)[:, None, None]  # each image's offset in `pixels`
        out = ops.zeros_like(ys)
        for dy, dx, weight in (
            (0, 0, (1 - wy) * (1 - wx)),
            (0, 1, (1 - wy) * wx),
            (1, 0, wy * (1 - wx)),
            (1, 1, wy * wx),
        ):
            y, x = y0 + dy, x0 + dx
            inside = (y >= 0) & (y < h) & (x >= 0) & (x < w)
            at = first + ops.clip(y, 0, h - 1) * w + ops.clip(x, 0, w - 1)
            out = out + ops.where(inside, ops.take(pixels, at), 0.0) * weight
        return ops.cast(out[..., None], images.dtype)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self) -> dict:
        return {**super().get_config(), "alpha": self.alpha, "sigma": self.sigma, "seed": self.seed}
