"""`mnist.training.train`: validation each epoch, and a prompt stop at a signal."""

import os
import signal

import keras
import numpy as np
import pytest

from mnist import preprocess, stopping, training
from mnist.settings import TrainConfig


class Stop(Exception):
    pass


def _prepared(train: int, val: int) -> preprocess.Prepared:
    rng = np.random.default_rng(0)
    x = rng.random((train + val, 28, 28, 1), np.float32)
    y = np.eye(10, dtype=np.float32)[np.arange(train + val) % 10]
    split = preprocess.Arrays(x, y)
    empty = split.take(np.arange(0))
    return preprocess.Prepared(
        split.take(np.arange(train)), split.take(np.arange(train, train + val)), empty, empty
    )


class _Seen(keras.callbacks.Callback):
    """Counts graph calls and the steps done; keeps each epoch's logs; sends SIGINT at the end
    of training call `signal_at`."""

    def __init__(self, signal_at: int | None = None):
        super().__init__()
        self.calls, self.steps, self.epochs, self.signal_at = 0, 0, [], signal_at

    def on_epoch_end(self, epoch, logs=None):
        self.epochs.append(dict(logs or {}))

    def on_train_batch_end(self, batch, logs=None):
        self.calls, self.steps = self.calls + 1, batch + 1  # `batch`: the call's last step
        if self.calls == self.signal_at:
            os.kill(os.getpid(), signal.SIGINT)


def test_every_epoch_is_validated():
    config = TrainConfig(profile="fast", epochs=2, batch_size=8)
    seen, prepared = _Seen(), _prepared(64, 16)
    net, history = training.train(config, prepared, callbacks=[seen])
    assert list(history["epoch"]) == [1, 2]
    assert all({"val_loss", "val_accuracy"} <= set(logs) for logs in seen.epochs)
    val = prepared.val
    scores = net.evaluate(val.x, val.y, batch_size=8, return_dict=True, verbose=0)
    assert history["val_loss"].iloc[-1] == pytest.approx(scores["loss"])
    assert history["val_accuracy"].iloc[-1] == pytest.approx(scores["accuracy"])


def _stopped(seen: _Seen) -> None:
    """`train` of 3 epochs of 16 steps with `seen`; the SIGINT it sends must raise `Stop`."""

    def stop(signum, frame):
        raise Stop

    previous = signal.signal(signal.SIGINT, stop)
    try:
        config = TrainConfig(profile="fast", epochs=3, batch_size=8)
        with pytest.raises(Stop):  # raised once `fit` returned (`mnist.stopping`)
            training.train(config, _prepared(128, 32), callbacks=[seen])
    finally:
        signal.signal(signal.SIGINT, previous)


def test_a_signal_stops_fit_within_4_steps_without_validating():
    seen = _Seen(signal_at=1)
    _stopped(seen)
    assert seen.calls == 1 and seen.steps <= 4
    assert len(seen.epochs) == 1 and "val_loss" not in seen.epochs[0]
    assert not stopping.pending()


def test_a_signal_during_validation_ends_fit_with_that_epoch(monkeypatch):
    safe_point = training._SafePoints.on_test_batch_end

    def signal_first(self, batch, logs=None):  # at the end of the first validation call
        if not stopping.pending():
            os.kill(os.getpid(), signal.SIGINT)
        safe_point(self, batch, logs)

    monkeypatch.setattr(training._SafePoints, "on_test_batch_end", signal_first)
    seen = _Seen()
    _stopped(seen)
    assert seen.calls == 4  # the first epoch's training calls, none of the second's
    assert len(seen.epochs) == 1 and "val_loss" not in seen.epochs[0]
