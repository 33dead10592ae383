"""A sweep's trial: a training run in an MLflow run nested under the sweep's, on whichever Dask
worker takes it. It reports each epoch to the study, whose pruner may stop it."""

from __future__ import annotations

import math

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import sweep
from mnist.errors import first_line
from mnist.settings import TrainConfig
from mnist.sweep import TrialResult
from mnist.sweep_space import Objective
from mnist.tracking import Run, use_store
from tasks import remote


def children(parent: str, experiment_id: str, running_only: bool = False) -> list:
    """The MLflow runs nested under `parent` (a sweep's trials), looked up by the parent's id
    alone: names never go into a filter string."""
    from mnist.tracking import call, client

    query = f"tags.`{remote.PARENT_TAG}` = '{parent}'"  # an MLflow run id: 32 hex digits
    if running_only:
        query += " and attributes.status = 'RUNNING'"
    return call(client().search_runs, [experiment_id], query, max_results=10000)


def close_runs(parent: str, experiment_id: str, numbers: set[int], why: str, but: str = "") -> None:
    """Fail the RUNNING trial runs under `parent` of the trials `numbers` (other than `but`)."""
    for lost in children(parent, experiment_id, running_only=True):
        if int(lost.data.tags.get("sweep.trial", -1)) in numbers and lost.info.run_id != but:
            run = Run.existing(lost.info.run_id)
            run.set_tags({"sweep.trial_state": f"lost: {why}"})
            run.end(False)


@task(name="trial", task_run_name="trial-{number}", cache_policy=NO_CACHE)
def trial(
    study: str,
    storage: str,
    number: int,
    config: TrainConfig,
    objective: str,
    parent_run: str,
    tracking_uri: str,
) -> TrialResult:
    """Train trial `number` of `study` with `config` (the base recipe and the trial's values),
    logging to an MLflow run nested under `parent_run`; the pruner may stop it after an
    epoch. A complete trial keeps its network; a trial that fails says why. Dask runs it again
    elsewhere when its worker dies: the lost attempt's run is failed then (its epochs already
    reported to the pruner stay: Optuna keeps the first report of a step)."""
    from mnist import training

    use_store(tracking_uri)  # the driver's store, wherever this worker runs
    logger, worker, goal = get_run_logger(), remote.worker(), Objective.parse(objective)
    tags = {remote.PARENT_TAG: parent_run, "sweep.study": study, "sweep.trial": str(number)}
    run = Run.start(config.experiment, f"{study}-trial-{number}", tags | {"dask.worker": worker})
    try:
        close_runs(parent_run, run.experiment_id, {number}, "worker died", but=run.run_id)
        handle = sweep.trial_of(study, storage, number)
        handle.set_user_attr("worker", worker)
        handle.set_user_attr("run_id", run.run_id)
        run.log_params(config.params())
        logger.info("trial %d on %s: %s", number, worker, sweep.params_json(handle.params))

        def on_epoch(epoch: int, metrics: dict[str, float], seconds: float) -> None:
            run.log_metrics(metrics | {"epoch_seconds": seconds}, step=epoch)
            shown = "  ".join(f"{k} {v:.4f}" for k, v in metrics.items())
            logger.info("trial %d epoch %d  %s  (%.1f s)", number, epoch, shown, seconds)

        judge, verdict = sweep.judge(handle, goal)
        net, history = training.train(config, remote.prepared(config), on_epoch, callbacks=[judge])
        run.log_frame(history, "history.csv")
        state = "pruned" if verdict.pruned else "complete"
        value = None if verdict.pruned else verdict.score(goal, history["val_accuracy"].iloc[-1])
        if value is not None:
            if math.isfinite(value):  # a time objective never reached: infinity, not a metric
                run.log_metrics({"objective": value})
            remote.keep_network(run, net)
        handle.set_user_attr("epochs", len(history))
    except Exception as exc:  # the study records it failed and goes on
        logger.warning("trial %d failed: %s", number, first_line(exc))
        run.set_tags({"sweep.trial_state": "failed", "sweep.error": first_line(exc)[:500]})
        run.end(False)
        return TrialResult(number, "failed", None, 0, worker, run.run_id, first_line(exc))
    except BaseException:
        run.end(False)
        raise
    run.set_tags({"sweep.trial_state": state})
    run.end(True)
    logger.info("trial %d %s after %d epoch(s): %s", number, state, len(history), value)
    return TrialResult(number, state, value, len(history), worker, run.run_id)
