"""The champion/challenger rule on its own (no Prefect, no MLflow), and the one name of the
gate's lock and concurrency limit. `judge` on real models: tests/integration."""

import pytest

from mnist import promotion
from mnist.settings import GateSettings


@pytest.mark.parametrize(
    ("challenger", "champion", "margin", "promote", "reason"),
    [
        (0.95, None, 0.0, False, "below the floor 0.99"),
        (0.991, None, 0.0, True, "no champion yet"),
        (
            0.995,
            0.992,
            0.0,
            True,
            "beats the champion on the test by more than 0.0 (test "
            "0.9950 against the champion's test 0.9920)",
        ),
        (0.992, 0.992, 0.0, False, "does not beat"),  # a tie keeps the champion
        (0.994, 0.992, 0.005, False, "by more than 0.005"),
    ],
)
def test_gate_rules(challenger, champion, margin, promote, reason):
    decision = promotion.decide(challenger, champion, GateSettings(floor=0.99, margin=margin))
    assert decision.promote is promote and reason in decision.reason
    assert decision.verdict == ("promoted" if promote else "rejected")


@pytest.mark.parametrize(
    ("scores", "promote", "reason"),
    [
        # (challenger test, champion test, challenger holdout, champion holdout)
        ((0.985, 0.995, 0.95, 0.60), False, "test accuracy 0.9850 is below the floor 0.99"),
        ((0.993, 0.995, 0.95, 0.60), True, "beats the champion on the holdout by more than 0.0"),
        ((0.996, 0.995, 0.59, 0.60), False, "loses to the champion on the holdout"),
        ((0.996, 0.995, 0.95, 0.60), True, "on the test and holdout"),
        ((0.995, 0.995, 0.60, 0.60), False, "does not beat the champion by more than 0.0"),
        ((0.993, None, 0.10, None), True, "no champion yet"),
    ],
)
def test_the_gate_judges_mnist_test_and_the_added_holdout(scores, promote, reason):
    decision = promotion.decide(scores[0], scores[1], GateSettings(floor=0.99), *scores[2:])
    assert decision.promote is promote and reason in decision.reason
    assert f"holdout {scores[2]:.4f}" in decision.reason  # every reason names both scores
    assert f"test {scores[0]:.4f}" in decision.reason


def test_the_floor_is_the_one_gate_setting(monkeypatch):
    assert GateSettings().floor == 0.99
    monkeypatch.setenv("MNIST_GATE_FLOOR", "0.5")
    assert promotion.decide(0.6, None, GateSettings()).promote


def test_the_gate_lock_and_the_prefect_limit_share_one_name(tmp_path, monkeypatch):
    from mnist import tracking

    monkeypatch.setattr(tracking, "state_dir", lambda: tmp_path)
    assert promotion.gate_name("mnist-cnn") == "mnist-cnn-champion-gate"
    path = promotion.gate_lock_path("mnist-cnn")
    assert path == tmp_path / "mnist-cnn-champion-gate.lock" and path.match(
        promotion.GATE_LOCK_GLOB
    )
    with promotion.lock("mnist-cnn", GateSettings(), "test", lambda holder, waited: None):
        assert promotion.gate_locks() == [path]
