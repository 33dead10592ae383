"""An ensemble's member: a training run nested under the ensemble's, on whichever Dask worker
takes it; it keeps its network for the driver to average."""

from __future__ import annotations

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist.settings import TrainConfig
from mnist.tracking import Run, use_store
from tasks import remote


@task(name="member", task_run_name="member-seed-{config.seed}", cache_policy=NO_CACHE)
def member(config: TrainConfig, parent_run: str, tracking_uri: str) -> tuple[str, float]:
    """Train one member with `config` (its seed among them) in an MLflow run nested under
    `parent_run`; returns the run's id and the last epoch's validation accuracy."""
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
    return run.run_id, float(history["val_accuracy"].iloc[-1])
