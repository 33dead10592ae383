"""The ONNX copy of a trained model (the suite's one full training, `full_run`): made when the
model was logged, checked on all 10,000 MNIST test digits, its figures tags of the run and of
the version, and run by ONNX Runtime with Keras's answers."""

from __future__ import annotations

import mlflow
import numpy as np
import pytest

from mnist import preprocess, registry
from mnist.tracking import load_runner

pytestmark = pytest.mark.slow  # the full training


def test_the_trained_version_has_a_checked_onnx_copy(full_run, mnist_data):
    config, result = full_run
    version = registry.get(config.registered_model, result.model_version)
    run_tags = mlflow.get_run(result.run_id).data.tags
    for tags in (version.tags, run_tags):
        assert tags["onnx"] == "yes"
        assert tags["onnx_checked_on"] == "10000"
        assert float(tags["onnx_same_digit"]) >= 0.9999
        assert float(tags["onnx_max_abs_diff"]) <= 1e-4

    ref = f"models:/{config.registered_model}/{result.model_version}"
    onnx, keras = load_runner(ref), load_runner(ref, "keras")
    assert (onnx.runtime, keras.runtime) == ("onnx", "keras")
    x = preprocess.unscale(preprocess.scale(mnist_data.test.images))
    by_onnx, by_keras = onnx.probabilities(x), keras.probabilities(x)
    assert np.mean(by_onnx.argmax(axis=1) == by_keras.argmax(axis=1)) >= 0.9999
    assert np.abs(by_onnx - by_keras).max() <= 1e-4
    accuracy = np.mean(by_onnx.argmax(axis=1) == mnist_data.test.targets)
    assert accuracy == pytest.approx(result.test_accuracy, abs=2e-4)
