"""Named Keras architectures, and the raw-pixel wrapper that every saved model carries.

Networks take (N, 28, 28, 1) float32 in [0, 1] and output 10 softmax probabilities.
`for_raw_pixels` puts the scaling inside the saved model, so a served or registered model takes
raw 0-255 pixels shaped (N, 28, 28) and nobody re-implements preprocessing at inference.
"""

from __future__ import annotations

from collections.abc import Callable

import keras
from keras import layers

from mnist.elastic import ElasticDistortion
from mnist.errors import MnistError
from mnist.preprocess import MAX_PIXEL, NUM_CLASSES

INPUT_SHAPE = (28, 28, 1)


def _conv_bn(filters: int, kernel: int) -> list[keras.layers.Layer]:
    return [
        layers.Conv2D(filters, kernel, use_bias=False),
        layers.BatchNormalization(momentum=0.9),
        layers.ReLU(),
    ]


def reference() -> keras.Sequential:
    """The Keras "simple MNIST convnet" (34,826 parameters): the benchmark's yardstick."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(32, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(64, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dropout(0.5),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="reference",
    )


def _conv_pool_dense(c1: int, c2: int, name: str) -> keras.Sequential:
    """5x5 conv (c1 channels), pool, 3x3 conv (c2), pool, 256 dense units; no BatchNorm."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            layers.Conv2D(c1, 5, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Conv2D(c2, 3, activation="relu"),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(256, activation="relu"),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name=name,
    )


def cnn() -> keras.Sequential:
    """The default: `small` with 32 and 64 channels, for the `default` profile.

    About twice `small`'s step time, for a few hundredths of a percent more accuracy."""
    return _conv_pool_dense(32, 64, "cnn")


def small() -> keras.Sequential:
    """For the `fast` profile: 24 5x5 and 32 3x3 convolutions, 256 dense units, no BatchNorm.

    No dropout either. On a 2-core CPU, 64 channels cost this net twice its step time and
    BatchNorm 2-3x: both buy less accuracy per second than another epoch does."""
    return _conv_pool_dense(24, 32, "small")


def wide() -> keras.Sequential:
    """For the `best` profile: two conv pairs (24, 64 channels) with BatchNorm, a dense head.

    24 rather than 32 channels at full resolution: about 0.8x the step time for the same
    validation accuracy, so more epochs fit in the profile's 30 minutes."""
    return keras.Sequential(
        [
            keras.Input(INPUT_SHAPE),
            *_conv_bn(24, 3),
            *_conv_bn(24, 3),
            layers.MaxPooling2D(2),
            *_conv_bn(64, 3),
            *_conv_bn(64, 3),
            layers.MaxPooling2D(2),
            layers.Flatten(),
            layers.Dense(128, use_bias=False),
            layers.BatchNormalization(momentum=0.9),
            layers.ReLU(),
            layers.Dropout(0.4),
            layers.Dense(NUM_CLASSES, activation="softmax"),
        ],
        name="wide",
    )


ARCHITECTURES: dict[str, Callable[[], keras.Sequential]] = {
    "cnn": cnn,
    "reference": reference,
    "small": small,
    "wide": wide,
}


def augmentation(elastic: float = 0.0) -> keras.Sequential:
    """Random rotations (up to 10 degrees), zoom and shifts (up to 10%), then, if `elastic`,
    elastic distortion of that strength, in training only: at inference these layers pass
    images through unchanged."""
    return keras.Sequential(
        [
            layers.RandomRotation(10 / 360, fill_mode="constant"),
            layers.RandomZoom(0.1, fill_mode="constant"),
            layers.RandomTranslation(0.1, 0.1, fill_mode="constant"),
            *([ElasticDistortion(elastic)] if elastic else []),
        ],
        name="augmentation",
    )


def build(name: str, augment: bool = False, elastic: float = 0.0) -> keras.Sequential:
    """Build the architecture called `name` (uncompiled), behind augmentation if asked (with
    elastic distortion of strength `elastic`, if not 0)."""
    try:
        net = ARCHITECTURES[name]()
    except KeyError:
        raise MnistError(
            f"unknown model {name!r}; choose one of: {', '.join(sorted(ARCHITECTURES))}"
        ) from None
    if not augment:
        return net
    return keras.Sequential(
        [keras.Input(INPUT_SHAPE), augmentation(elastic), net], name=f"{name}_aug"
    )


def core(net: keras.Model) -> keras.Model:
    """The named architecture inside `net` (behind augmentation, if `build` put it there)."""
    return net.layers[-1] if net.name.endswith("_aug") else net


def for_raw_pixels(net: keras.Model) -> keras.Sequential:
    """Wrap a trained network so it takes raw 0-255 pixels shaped (N, 28, 28); without its
    augmentation, which does nothing at inference (and whose layers a loader without this
    package would not know)."""
    net = core(net)
    return keras.Sequential(
        [
            keras.Input((28, 28), name="pixels"),
            layers.Rescaling(1.0 / float(MAX_PIXEL)),
            layers.Reshape(INPUT_SHAPE),
            net,
        ],
        name=f"{net.name}_raw_pixels",
    )
