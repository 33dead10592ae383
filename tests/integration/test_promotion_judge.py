"""`promotion.judge` on real models: a real SQLite MLflow store and registry, models trained
for seconds on real MNIST images."""

import numpy as np
import pytest

from mnist import evaluation, models, preprocess, promotion, registry, training
from mnist.settings import GateSettings, TrainConfig
from mnist.tracking import Run


@pytest.fixture(scope="module")
def nets(mnist_data):
    """A trained net (~95% on 500 test images) and an untrained one, and that test split."""
    prepared = preprocess.prepare(mnist_data, 0.0, 0, train_limit=3000, test_limit=500)
    good, _ = training.train(TrainConfig(profile="fast", epochs=1, seed=0), prepared)
    weak = models.build("small")
    return good, weak, prepared.test


def _register(net, test, name: str) -> registry.Version:
    run = Run.start("promotion-test", "challenger", {})
    uri = run.log_model(models.for_raw_pixels(net), preprocess.unscale(test.x[:2]))
    run.end(True)
    return registry.register(uri, run.run_id, {}, name)


def test_judge_promotes_rejects_and_records(nets, store):
    good, weak, test = nets
    name, gate = "judge-test", GateSettings(floor=0.5)

    first = promotion.judge(_register(weak, test, name), test, gate)
    assert not first.decision.promote and "below the floor 0.5" in first.decision.reason
    assert registry.champion(name) is None and first.champion_version is None

    second = promotion.judge(_register(good, test, name), test, gate)
    assert second.decision.promote and "no champion yet" in second.decision.reason
    # Scored on raw pixels through the logged model: the same as the net on its own inputs.
    assert second.challenger_accuracy == pytest.approx(evaluation.evaluate(good, test).accuracy)
    assert second.challenger_accuracy > 0.8
    assert registry.champion(name).version == second.challenger.version == "2"

    third = promotion.judge(_register(weak, test, name), test, gate)
    assert not third.decision.promote and third.compared_to == "2"
    assert third.incumbent_accuracy == pytest.approx(second.challenger_accuracy)
    assert third.champion_version == registry.champion(name).version == "2"

    tags = registry.get(name, "3").tags
    assert tags["decision"] == "rejected" and tags["compared_to_version"] == "2"
    assert tags["decision_reason"] == third.decision.reason
    events = registry.history(name)
    assert events["action"].tolist() == ["rejected", "promoted", "rejected"]
    assert events["previous"].tolist() == ["", "", "2"]
    assert np.isclose(float(tags["champion_accuracy"]), second.challenger_accuracy, atol=1e-4)
