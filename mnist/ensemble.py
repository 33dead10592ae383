"""Ensembles: several trained networks as one, averaging their probabilities."""

from __future__ import annotations

from collections.abc import Sequence

import keras

from mnist.models import INPUT_SHAPE


def average(nets: Sequence[keras.Model]) -> keras.Model:
    """One network that gives the mean of `nets`' probabilities, on the same model inputs
    (N, 28, 28, 1) in [0, 1]: `models.for_raw_pixels` wraps it as it wraps any network. It
    takes the networks over: renamed apart and frozen."""
    if len(nets) < 2:
        raise ValueError(f"an ensemble needs two members or more, not {len(nets)}")
    pixels = keras.Input(INPUT_SHAPE, name="image")
    outputs = []
    for i, net in enumerate(nets):
        net.name = f"member_{i}_{net.name}"  # unique names inside one model
        net.trainable = False
        outputs.append(net(pixels))
    mean = keras.layers.Average(name="mean_probability")(outputs)
    return keras.Model(pixels, mean, name=f"ensemble_of_{len(nets)}")
