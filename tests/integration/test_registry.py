"""The registry and the champion gate, for real: Prefect API, SQLite MLflow store, MNIST
(`tests/unit/mnist/test_registry.py` has the registry on its own, without training)."""

import os
import signal
import subprocess
import sys
import threading

import pytest

from app.cli import main
from flows.retrain import retrain_flow
from mnist import registry
from mnist.errors import MnistError
from mnist.settings import GateSettings, TrainConfig
from tests.unit.mnist.test_locks import HOLD


def _config(mnist_path, name, **overrides) -> TrainConfig:
    """A quick challenger: the small net on a real MNIST subset."""
    settings = dict(
        data_dir=mnist_path,
        model="small",
        epochs=2,
        train_limit=4000,
        test_limit=1000,
        experiment=f"test-{name}",
        registered_model=name,
    )
    return TrainConfig(**(settings | overrides))


@pytest.mark.slow
def test_training_registers_a_version_with_its_lineage(full_run, mnist_data):
    _, result = full_run
    v = registry.get("mnist-cnn", result.model_version)
    assert v.run_id == result.run_id
    assert v.tags["run_id"] == result.run_id
    assert v.tags["dataset_digest"] == mnist_data.digest
    assert float(v.tags["test_accuracy"]) == pytest.approx(result.test_accuracy, abs=1e-4)
    assert len(v.tags["git_commit"]) >= 7


@pytest.fixture(scope="module")
def gated(prefect_api, workdir, mnist_path):
    """A first champion, then a deliberately weak challenger (200 images, 1 epoch)."""
    name = "gate-test"
    gate = GateSettings(floor=0.8)
    first = retrain_flow(_config(mnist_path, name), gate)
    weak = retrain_flow(_config(mnist_path, name, train_limit=200, epochs=1), gate)
    return name, first, weak


@pytest.mark.slow
def test_first_challenger_above_the_floor_becomes_champion(gated):
    name, first, _ = gated
    assert first.decision.promote and "no champion yet" in first.decision.reason
    v = registry.get(name, first.training.model_version)
    assert v.tags["decision"] == "promoted" and v.tags["compared_to_version"] == "none"


@pytest.mark.slow
def test_weak_challenger_leaves_the_champion_and_says_why(gated):
    name, first, weak = gated
    assert not weak.decision.promote
    assert registry.champion(name).version == first.training.model_version
    v = registry.get(name, weak.training.model_version)
    assert v.tags["decision"] == "rejected"
    assert v.tags["compared_to_version"] == first.training.model_version
    assert "below the floor 0.8" in v.tags["decision_reason"]
    assert float(v.tags["challenger_accuracy"]) < 0.8
    events = registry.history(name)
    assert events["action"].tolist() == ["promoted", "rejected"]
    assert events["reason"].iloc[1] == v.tags["decision_reason"]


@pytest.mark.slow
def test_promote_then_rollback_restores_the_previous_champion(gated, capsys):
    """On a registered model of its own (the gate's two models, registered again)."""
    _, first, weak = gated
    name = "rollback-test"
    for result in (first, weak):
        registry.register(result.training.model_uri, result.training.run_id, {}, name)
    assert main(["registry", "--registered-model", name, "promote", "1", "--reason", "first"]) == 0
    assert main(["registry", "--registered-model", name, "promote", "2", "--reason", "drill"]) == 0
    assert registry.champion(name).version == "2"
    assert main(["registry", "--registered-model", name, "rollback"]) == 0
    assert registry.champion(name).version == "1"
    assert f"champion is now {name} v1" in capsys.readouterr().out
    events = registry.history(name)
    assert events["action"].tolist() == ["promote", "promote", "rollback"]
    assert events["previous"].tolist() == ["", "1", "2"]
    # v1 was the first champion: there is nothing earlier to roll back to.
    assert main(["registry", "--registered-model", name, "rollback"]) == 1
    assert "no earlier champion" in capsys.readouterr().err


@pytest.mark.slow
def test_registry_cli_list_show_history(gated, capsys):
    name, first, weak = gated
    assert main(["registry", "--registered-model", name, "list"]) == 0
    out = capsys.readouterr().out
    assert "champion" in out and "rejected" in out and first.training.run_id in out
    assert main(["registry", "--registered-model", name, "show"]) == 0
    assert f"{name} v{first.training.model_version}  aliases: champion" in capsys.readouterr().out
    assert main(["registry", "--registered-model", name, "show", weak.training.model_version]) == 0
    assert "decision:             rejected" in capsys.readouterr().out
    assert main(["registry", "--registered-model", name, "history"]) == 0
    assert "below the floor" in capsys.readouterr().out


@pytest.mark.slow
def test_concurrent_retrains_leave_one_consistent_champion(prefect_api, workdir, mnist_path):
    name = "race-test"
    results, errors = {}, []

    def retrain(seed):
        try:
            results[seed] = retrain_flow(
                _config(mnist_path, name, seed=seed), GateSettings(floor=0.5)
            )
        except Exception as exc:  # surfaced below
            errors.append(exc)

    threads = [threading.Thread(target=retrain, args=(seed,)) for seed in (1, 2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=900)
    assert not errors and len(results) == 2
    events = registry.history(name)
    assert len(events) == 2 and events["action"].iloc[0] == "promoted"
    first, second = events.to_dict("records")
    # The second gate saw the first gate's outcome: no lost update.
    assert second["previous"] == first["version"]
    accuracy = {v.version: float(v.tags["challenger_accuracy"]) for v in registry.versions(name)}
    best = max(accuracy.values())
    champion = registry.champion(name).version
    assert accuracy[champion] == best
    assert second["action"] == ("promoted" if champion == second["version"] else "rejected")


@pytest.mark.slow
@pytest.mark.parametrize(
    ("args", "message"),
    [
        (
            ["--registered-model", "nothing-here", "list"],
            "registered model 'nothing-here' does not exist",
        ),
        (
            ["--registered-model", "nothing-here", "rollback"],
            "registered model 'nothing-here' does not exist",
        ),
        (["show", "999"], "model 'mnist-cnn' has no version 999"),
        (["show", "--alias", "gold"], "model 'mnist-cnn' has no alias 'gold'"),
        (["promote", "999"], "model 'mnist-cnn' has no version 999"),
    ],
)
def test_registry_errors_are_one_line(full_run, capsys, args, message):
    assert main(["registry", *args]) == 1
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1


def test_retrain_needs_registration(prefect_api, workdir, mnist_path):
    with pytest.raises(MnistError, match="drop --no-register"):
        retrain_flow(_config(mnist_path, "x", register_model=False))


@pytest.mark.slow
def test_a_gate_killed_while_holding_the_lock_does_not_block_the_next(
    prefect_api, workdir, mnist_path
):
    """`kill -9` of a process inside the gate, while another retrain waits for it."""
    name = "killed-gate"
    lock = workdir / f"{name}-champion-gate.lock"
    holder = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(lock)], stdout=subprocess.PIPE, text=True
    )
    assert holder.stdout.readline().strip() == "held"
    config = _config(mnist_path, name, train_limit=1000)
    gate = GateSettings(floor=0.5, wait_seconds=2)
    held = f"{name}-champion-gate is held by flow run crash-test"
    try:
        with pytest.raises(MnistError, match=held):
            retrain_flow(config, gate)  # a live holder: a bounded wait, then one clear line
    finally:
        os.kill(holder.pid, signal.SIGKILL)
        holder.wait()
    result = retrain_flow(config, gate)  # the killed holder left nothing behind
    assert result.decision.promote and registry.champion(name).version == "2"
