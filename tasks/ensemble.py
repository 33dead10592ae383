"""An ensemble's members: a training run nested under the ensemble's, on whichever Dask worker
takes it, which keeps its network for the driver to average; or a model trained before."""

from __future__ import annotations

import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist.members import Member
from mnist.settings import TrainConfig
from mnist.tracking import Run, use_store
from tasks import remote

if TYPE_CHECKING:
    import keras
    import pandas as pd


@task(name="member", task_run_name="member-seed-{config.seed}", cache_policy=NO_CACHE)
def member(config: TrainConfig, parent_run: str, tracking_uri: str) -> tuple[str, float | None]:
    """Train one member with `config` (its seed among them) in an MLflow run nested under
    `parent_run`; returns the run's id and the last epoch's validation accuracy (None
    without a validation split)."""
    from mnist import training

    use_store(tracking_uri)  # the driver's store, wherever this worker runs
    logger, worker = get_run_logger(), remote.worker()
    tags = {remote.PARENT_TAG: parent_run, "ensemble.member": "true", "dask.worker": worker}
    run = Run.start(config.experiment, f"member-seed-{config.seed}", tags)
    try:
        run.log_params(config.params())
        logger.info("member seed %d on %s, in MLflow run %s", config.seed, worker, run.run_id)

        def on_epoch(epoch: int, metrics: dict[str, float], seconds: float) -> None:
            run.log_metrics(metrics | {"epoch_seconds": seconds}, step=epoch)
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            logger.info("seed %d epoch %d  %s  (%.1f s)", config.seed, epoch, shown, seconds)

        net, history = training.train(config, remote.prepared(config), on_epoch)
        run.log_frame(history, "history.csv")
        remote.keep_network(run, net)
    except BaseException:
        run.end(False)
        raise
    run.end(True)
    validated = "val_accuracy" in history  # none where the recipe holds no split out
    return run.run_id, float(history["val_accuracy"].iloc[-1]) if validated else None


@task(name="existing-member", task_run_name="member-{member.ref}", cache_policy=NO_CACHE)
def existing(member: Member) -> tuple[keras.Model, pd.DataFrame]:
    """A model trained before (`mnist.members`): its network and its training history."""
    from mnist import models, tracking

    net = models.core(tracking.load_model(member.ref).layers[-1])
    with tempfile.TemporaryDirectory(prefix="mnist-member-") as scratch:
        history = remote.history(member.run_id, Path(scratch))
    get_run_logger().info("member %s: run %s, a %s network", member.ref, member.run_id, net.name)
    return net, history
