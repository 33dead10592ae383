"""Fit a named architecture with Adam and a one-cycle learning rate; history as a DataFrame."""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Sequence

import keras
import numpy as np
import pandas as pd

from mnist import models, stopping
from mnist.preprocess import Prepared
from mnist.settings import TrainConfig

STEPS_PER_EXECUTION = 4
"""Training steps per graph call. Keras runs callbacks between calls, so this bounds how long
a Ctrl-C waits for its safe point; 16 made an epoch 1-3% faster (docs/performance/training.md)."""

EpochHook = Callable[[int, dict[str, float], float], None]
"""Called after each epoch with (epoch starting at 1, metrics, seconds the epoch took)."""


class _SafePoints(keras.callbacks.Callback):
    """Stop `fit` at the end of the batch when a Ctrl-C or SIGTERM arrived (`mnist.stopping`);
    the interrupt is raised after `fit` returns, never inside Keras' loops."""

    def on_train_batch_end(self, batch, logs=None):
        if stopping.pending() and self.model is not None:
            self.model.stop_training = True

    def on_test_batch_end(self, batch, logs=None):
        if stopping.pending() and self.model is not None:
            self.model.stop_evaluating = self.model.stop_training = True


class _Validation(keras.callbacks.Callback):
    """Score the validation set at each epoch's end into the epoch's `val_` metrics, as `fit`'s
    `validation_data` does, but not after an interrupted epoch: `fit` would first trace and run
    its evaluation, which on a busy CPU takes seconds of a Ctrl-C's stop. Unlike `fit`'s, it
    gives other callbacks no `on_test_*` calls and `on_train_end` no `val_` metrics."""

    def __init__(self, x: np.ndarray, y: np.ndarray, batch_size: int):
        super().__init__()
        self.x, self.y, self.batch_size = x, y, batch_size

    def on_epoch_end(self, epoch, logs=None):
        if stopping.pending() or logs is None or self.model is None:
            return
        scores = self.model.evaluate(
            self.x, self.y, self.batch_size, verbose=0, callbacks=[_SafePoints()], return_dict=True
        )
        if stopping.pending():  # a partial score is no validation
            return
        logs.update({f"val_{name}": value for name, value in scores.items()})


class _EpochReporter(keras.callbacks.Callback):
    def __init__(self, hook: EpochHook):
        super().__init__()
        self.hook = hook

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        if stopping.pending():  # an interrupted epoch is not reported
            return
        metrics = {k: float(v) for k, v in (logs or {}).items() if k != "learning_rate"}
        self.hook(epoch + 1, metrics, time.perf_counter() - self.started)


def one_cycle(
    peak: float, total_steps: int, warmup: float = 0.2
) -> keras.optimizers.schedules.LearningRateSchedule:
    """Linear warm-up to `peak` over `warmup` of the steps, then cosine decay to peak/100."""
    warmup_steps = max(1, int(total_steps * warmup))
    return keras.optimizers.schedules.CosineDecay(
        initial_learning_rate=peak / 10,
        decay_steps=max(1, total_steps - warmup_steps),
        alpha=0.01,
        warmup_target=peak,
        warmup_steps=warmup_steps,
    )


def compile_model(
    net: keras.Model,
    learning_rate: keras.optimizers.schedules.LearningRateSchedule | float,
    label_smoothing: float,
    betas: tuple[float, float],
) -> keras.Model:
    """Adam, categorical cross-entropy, accuracy; several steps per graph call, since on a
    small CPU the per-step Python overhead is a large share of a small net's step."""
    net.compile(
        optimizer=keras.optimizers.Adam(
            learning_rate,  # pyright: ignore[reportArgumentType]  (a schedule is accepted)
            beta_1=betas[0],
            beta_2=betas[1],
        ),
        loss=keras.losses.CategoricalCrossentropy(label_smoothing=label_smoothing),
        metrics=["accuracy"],
        steps_per_execution=STEPS_PER_EXECUTION,
    )
    return net


def plan(config: TrainConfig, warm: bool) -> tuple[int, float]:
    """The epochs and peak learning rate of a run: the recipe's, or from a warm start its
    fine-tuning ones (`finetune_epochs`, `finetune_learning_rate`)."""
    if warm:
        return config.finetune_epochs, config.finetune_learning_rate
    return config.epochs, config.learning_rate


def warm_start(config: TrainConfig, model: keras.Model) -> keras.Model | None:
    """`config.model` built with the weights of a logged raw-pixel model, or None when that
    model's architecture is another."""
    keras.utils.set_random_seed(config.seed)
    net = models.build(config.model, config.augment, config.elastic)
    source = models.core(model.layers[-1])
    if source.name != config.model:
        return None
    try:
        models.core(net).set_weights(source.get_weights())
    except ValueError:  # same name, other shapes: an architecture changed since
        return None
    return net


def train(
    config: TrainConfig,
    data: Prepared,
    on_epoch: EpochHook | None = None,
    callbacks: Sequence[keras.callbacks.Callback] = (),
    init: keras.Model | None = None,
) -> tuple[keras.Model, pd.DataFrame]:
    """Build and fit `config.model` on data.train, monitoring data.val each epoch; from `init`
    (made by `warm_start`), for the epochs and learning rate `plan` gives a warm start."""
    keras.utils.set_random_seed(config.seed)
    epochs, lr = plan(config, warm=init is not None)
    net = models.build(config.model, config.augment, config.elastic) if init is None else init
    steps = math.ceil(len(data.train) / config.batch_size) * epochs
    compile_model(
        net,
        one_cycle(lr, steps) if config.schedule == "one-cycle" else lr,
        config.label_smoothing,
        (config.adam_beta_1, config.adam_beta_2),
    )
    validation = (
        [_Validation(data.val.x, data.val.labelled_y, config.batch_size)] if len(data.val) else []
    )
    hooks = [
        *validation,
        *callbacks,
        _SafePoints(),
        *([_EpochReporter(on_epoch)] if on_epoch else []),
    ]
    with stopping.deferred():
        fit = net.fit(
            data.train.x,
            data.train.y,
            batch_size=config.batch_size,
            epochs=epochs,
            callbacks=hooks,
            verbose=0,  # pyright: ignore[reportArgumentType]  (Keras' stub says str; 0 is silent)
        )
    # an epoch stopped early, when the signal is not raised here, has no `val_` metrics
    history = pd.DataFrame({key: pd.Series(v, dtype=float) for key, v in fit.history.items()})
    history.insert(0, "epoch", np.arange(1, len(history) + 1))
    return net, history
