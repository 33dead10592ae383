import keras
import numpy as np
import pandas as pd
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import models, training
from mnist.preprocess import Prepared, unscale
from mnist.settings import TrainConfig
from mnist.tracking import Run


@task(
    name="train",
    task_run_name="train-{config.model}-e{config.epochs}-s{config.seed}",
    cache_policy=NO_CACHE,
)
def train(config: TrainConfig, prepared: Prepared, run: Run) -> tuple[keras.Model, pd.DataFrame]:
    """Fit the model, logging each epoch to the Prefect log and to MLflow (step = epoch)."""
    logger = get_run_logger()
    logger.info(
        "training %s for %d epochs on %d images (batch %d, peak lr %g, seed %d)",
        config.model,
        config.epochs,
        len(prepared.train),
        config.batch_size,
        config.learning_rate,
        config.seed,
    )

    def on_epoch(epoch: int, metrics: dict[str, float], seconds: float) -> None:
        run.log_metrics(metrics | {"epoch_seconds": seconds}, step=epoch)
        shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
        logger.info("epoch %d/%d  %s  (%.1f s)", epoch, config.epochs, shown, seconds)

    net, history = training.train(config, prepared, on_epoch)
    run.log_frame(history, "history.csv")
    run.log_metrics({"parameters": float(net.count_params())})
    return net, history


@task(name="log-model", cache_policy=NO_CACHE)
def log_model(net: keras.Model, example: np.ndarray, run: Run) -> str:
    """Log the network, wrapped to take raw 0-255 pixels (N, 28, 28), as the run's `model`."""
    uri = run.log_model(models.for_raw_pixels(net), unscale(example))
    get_run_logger().info("logged model %s", uri)
    return uri
