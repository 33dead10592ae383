"""An ensemble (`mnist.ensemble`) is one network giving its members' mean probabilities; the
monitor's drift embedder (`mnist.drift`) takes its members' embeddings side by side."""

from __future__ import annotations

import keras
import numpy as np
import pytest

from mnist import drift, ensemble, models


@pytest.fixture(scope="module")
def members() -> list[keras.Model]:
    nets = []
    for seed in (1, 2):
        keras.utils.set_random_seed(seed)
        nets.append(models.build("small"))
    return nets


def test_the_ensemble_gives_its_members_mean_probabilities(members):
    x = np.random.default_rng(0).random((8, 28, 28, 1), dtype=np.float32)
    each = [np.asarray(m(x)) for m in members]
    net = ensemble.average(members)
    assert np.allclose(np.asarray(net(x)), np.mean(each, axis=0), atol=1e-6)
    raw = models.for_raw_pixels(net)
    assert np.allclose(np.asarray(raw(x[..., 0] * 255)), np.mean(each, axis=0), atol=1e-5)


def test_an_ensemble_of_one_is_refused(members):
    with pytest.raises(ValueError, match="two members or more"):
        ensemble.average(members[:1])


def test_the_drift_embedder_of_an_ensemble_joins_its_members(members):
    raw = models.for_raw_pixels(ensemble.average(members))
    pixels = np.random.default_rng(1).integers(0, 256, (4, 28, 28)).astype(np.float32)
    embeddings, probabilities = drift.embedder(raw)(pixels)
    single, _ = drift.embedder(models.for_raw_pixels(members[0]))(pixels)
    assert embeddings.shape == (4, 2 * single.shape[1])
    assert np.allclose(np.asarray(probabilities), np.asarray(raw(pixels)), atol=1e-5)
