from __future__ import annotations

import time
from typing import TYPE_CHECKING

import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import registry, tracking
from mnist.data import Added
from mnist.errors import MnistError
from mnist.preprocess import Prepared, unscale
from mnist.settings import TrainConfig
from mnist.tracking import Run

if TYPE_CHECKING:
    import keras  # types only: TensorFlow loads when a task runs, not when a flow imports


@task(
    name="train",
    task_run_name="train-{config.model}-e{config.epochs}-s{config.seed}",
    cache_policy=NO_CACHE,
)
def train(
    config: TrainConfig, prepared: Prepared, run: Run, init: keras.Model | None = None
) -> tuple[keras.Model, pd.DataFrame]:
    """Fit the model (from `init`'s weights when given), logging each epoch to the Prefect log
    and to MLflow (step = epoch)."""
    from mnist import training

    logger = get_run_logger()
    epochs, lr = training.plan(config, warm=init is not None)
    logger.info(
        "%s %s for %d epochs on %d images (batch %d, peak lr %g, seed %d)",
        "training" if init is None else "fine-tuning",
        config.model,
        epochs,
        len(prepared.train),
        config.batch_size,
        lr,
        config.seed,
    )

    def on_epoch(epoch: int, metrics: dict[str, float], seconds: float) -> None:
        run.log_metrics(metrics | {"epoch_seconds": seconds}, step=epoch)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        logger.info("epoch %d/%d  %s  (%.1f s)", epoch, epochs, shown, seconds)

    net, history = training.train(config, prepared, on_epoch, init=init)
    run.log_frame(history, "history.csv")
    run.log_metrics({"parameters": float(net.count_params())})
    return net, history


@task(name="warm-start", cache_policy=NO_CACHE)
def warm_start(config: TrainConfig, ref: str | None, added: Added, run: Run) -> keras.Model | None:
    """The network to fine-tune from `ref` (`config.init_from`, resolved to a version), or
    None (train from scratch) when there is none, its architecture is not the recipe's, or it
    learnt from added data since removed; the run's tag `warm_start` says which, and why."""
    if not ref:
        return None
    from mnist import models, training

    logger = get_run_logger()
    try:
        gone = (registry.trained_on(ref) or set()) - set(added.batches)
        model = None if gone else tracking.load_model(ref)
    except MnistError as exc:
        why = f"none: {exc}"
    else:
        if model is None:
            why = f"none: {ref} learnt from batch(es) {sorted(gone)}, since removed"
        elif (net := training.warm_start(config, model)) is not None:
            run.set_tags({"warm_start": ref})
            logger.info("warm start from %s (%s)", ref, config.init_from)
            return net
        else:
            found = models.core(model.layers[-1]).name
            why = f"none: {ref} is a {found!r} network, the recipe's is {config.model!r}"
    run.set_tags({"warm_start": why})
    logger.warning("warm start %s; training from scratch", why)
    return None


@task(name="log-model", cache_policy=NO_CACHE)
def log_model(net: keras.Model, test_x: np.ndarray, run: Run) -> tuple[str, dict[str, str]]:
    """Log the network, wrapped to take raw 0-255 pixels (N, 28, 28), as the run's `model`,
    with its ONNX copy when that gives the same answers on the test images `test_x` (model
    inputs); returns its URI and the copy's tags (`onnx`, `onnx_same_digit`, ...)."""
    from mnist import models

    started = time.perf_counter()
    images = unscale(test_x)
    logged = run.log_model_with_copy(models.for_raw_pixels(net), images[:5], images)
    logger = get_run_logger()
    logger.info("logged model %s (%.1f s)", logged.uri, time.perf_counter() - started)
    if logged.tags["onnx"] == "yes":
        logger.info(
            "ONNX copy: same digit on %s of %s test images, max |diff| %s",
            logged.tags["onnx_same_digit"],
            logged.tags["onnx_checked_on"],
            logged.tags["onnx_max_abs_diff"],
        )
    else:
        logger.warning("logged without an ONNX copy: %s", logged.tags["onnx"][4:])
    return logged.uri, logged.tags
