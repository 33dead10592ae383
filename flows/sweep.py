"""The sweep flow: an Optuna study whose trials run as Prefect tasks on Dask (`DaskTaskRunner`:
a local cluster, or a scheduler anywhere), each in an MLflow run nested under the sweep's;
then the best trial's model is published as a training run's is, and optionally gated."""

from __future__ import annotations

import contextlib
import math
import re
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact, create_table_artifact
from prefect.futures import as_completed
from prefect_dask.task_runners import DaskTaskRunner
from pydantic import ValidationError

import tasks
from flows.cluster import task_runner, workers_of
from flows.stale_runs import tidy
from flows.training import TrainingResult, publish_network
from mnist import data, registry, sweep, tracking
from mnist.addresses import absolute_sqlite
from mnist.errors import MnistError, first_line
from mnist.promotion import Outcome
from mnist.settings import DaskSettings, GateSettings, SweepSettings, TrainConfig
from mnist.sweep import SweepError
from mnist.sweep_space import Space, load_space
from mnist.tracking import Run, call, client
from tasks.remote import load_network
from tasks.sweep import children, close_runs, trial


@dataclass(frozen=True)
class SweepResult:
    """A finished study: its trials, its best one, and what became of that one's model."""

    name: str
    storage: str
    run_id: str
    trials: list[dict[str, Any]]
    best_trial: int
    best_value: float
    best_params: dict[str, Any]
    training: TrainingResult
    outcome: Outcome | None
    reclaimed: list[int]


def _open(config: TrainConfig | None, settings: SweepSettings, url: str):
    """The study to run: a new one, or (`--resume`) the named one, made ready to go on."""
    if settings.resume:
        study = sweep.load(settings.resume, url)
        stored, space, objective, total = sweep.settings_of(study)
        return study, TrainConfig(**stored), space, str(objective), total, _resumable(study)
    try:
        space = load_space(settings.space)
    except ValueError as exc:
        raise MnistError(str(exc)) from None
    config = config or TrainConfig.from_profile(
        profile=space.base, validation_split=space.validation_split
    )
    if config.validation_split == 0:
        raise MnistError("a sweep scores its trials on the validation split: --validation-split 0")
    # a sweep tunes a recipe on MNIST (added data would make trials of one study unequal), read
    # where the driver reads it, wherever a worker runs
    config = TrainConfig(
        **{**config.model_dump(), "added_data": False, "data_dir": data.where(config.data_dir)}
    )
    stem = re.sub(r"[^A-Za-z0-9._-]+", "-", Path(settings.space).stem).strip("-.") or "space"
    name = settings.name or f"sweep-{stem}-{time.strftime('%Y%m%d-%H%M%S')}"
    objective = sweep.Objective.parse(settings.objective)
    study = sweep.create(name, url, config, space, objective, settings.trials)
    return study, config, space, settings.objective, settings.trials, []


def _resumable(study) -> list[int]:
    """Ready a stopped study to go on: refuse one that is finished or that a live driver runs;
    tell the trials that finished on their workers after their driver died, fail the others it
    left running and queue their values again (their MLflow runs failed). Returns those."""
    from mnist.tracking.stale import alive

    name = study.study_name
    if run := study.user_attrs.get("published_run"):
        raise SweepError(
            f"study {name!r} is finished: its best trial's model is in MLflow run {run}"
        )
    parent_id = study.user_attrs.get("mlflow_run_id")
    if not parent_id:
        return sweep.reclaim(study)
    parent = Run.existing(parent_id)
    found = call(client().get_run, parent_id)
    if found.info.status == "RUNNING" and alive(found.data.tags):
        host, pid = found.data.tags.get("mnist.host"), found.data.tags.get("mnist.pid")
        raise SweepError(f"study {name!r} is being run by pid {pid} on {host}: stop it first")
    ended = {}
    for run in children(parent_id, parent.experiment_id):
        state, number = run.data.tags.get("sweep.trial_state"), run.data.tags.get("sweep.trial")
        if run.info.status == "FINISHED" and state in ("complete", "pruned") and number:
            value = run.data.metrics.get("objective", math.inf) if state == "complete" else None
            ended[int(number)] = sweep.TrialResult(
                int(number), state, value, 0, "", run.info.run_id
            )
    again = sweep.reclaim(study, ended)
    close_runs(parent_id, parent.experiment_id, set(again), "the sweep's driver stopped")
    return again


def _parent(study, config: TrainConfig) -> Run:
    """The sweep's MLflow run: made at the study's start, reopened on a resume."""
    from prefect.runtime import flow_run

    from mnist.tracking import call, client
    from mnist.tracking.stale import owner

    flow_tag = {"prefect.flow_run_id": str(flow_run.id or "")}
    if run_id := study.user_attrs.get("mlflow_run_id"):
        call(client().update_run, run_id, status="RUNNING")
        run = Run.existing(run_id)
        run.set_tags(owner() | flow_tag)  # the new driver owns it now (stale-run checks)
        return run
    tags = {"sweep.study": study.study_name, "sweep.role": "parent", **flow_tag}
    run = Run.start(config.experiment, study.study_name, tags)
    run.log_params({"sweep." + k: str(v) for k, v in study.user_attrs.items() if k != "config"})
    study.set_user_attr("mlflow_run_id", run.run_id)
    return run


def _run_trials(
    study,
    runner: DaskTaskRunner,
    config: TrainConfig,
    space: Space,
    objective: str,
    total: int,
    url: str,
    parent: Run,
) -> None:
    """Ask the study for trials and run them, as many at once as the cluster has workers,
    until `total` have finished."""
    logger = get_run_logger()
    logger.info(
        "study %s: %s; %d worker(s)", study.study_name, sweep.describe(study), workers_of(runner)
    )
    store = absolute_sqlite(tracking.store_uri())  # the trials log there, wherever they run
    running: dict[Any, int] = {}
    while True:
        while len(running) < workers_of(runner) and sweep.finished(study) + len(running) < total:
            asked = study.ask()
            values = space.suggest(asked)
            try:
                settings = TrainConfig(**{**config.model_dump(), **values})
            except ValidationError as exc:  # values the recipe refuses: this trial fails
                sweep.tell(study, asked.number, None, first_line(exc))
                continue
            parameters = {
                "study": study.study_name,
                "storage": url,
                "number": asked.number,
                "config": settings,
                "objective": objective,
                "parent_run": parent.run_id,
                "tracking_uri": store,
            }
            running[runner.submit(trial, parameters)] = asked.number
        if not running:
            return
        done = next(as_completed(list(running)))
        number = running.pop(done)
        try:
            result = done.result()
        except Exception as exc:  # the task itself broke (its worker's, not the trial's)
            logger.warning("trial %d failed: %s", number, exc)
            sweep.tell(study, number, None, first_line(exc))
        else:
            sweep.tell(study, number, result)


def _best(study, config: TrainConfig, settings: SweepSettings, gate: GateSettings):
    """Publish the best complete trial's network in its own run, as a training run publishes
    its model (scores, plots, the model with its ONNX copy, the registered version tagged with
    the sweep, its card); then, with `--gate`, judge it against the champion."""
    best = sweep.best(study)
    best_config = TrainConfig(**{**config.model_dump(), **best.params})
    run = Run.existing(best.user_attrs["run_id"])
    with tempfile.TemporaryDirectory(prefix="mnist-sweep-") as scratch:
        net, history = load_network(run.run_id, Path(scratch))
    tags = {"sweep": study.study_name, "sweep_trial": str(best.number)}
    result, prepared = publish_network(best_config, run, net, history, tags)
    outcome = None
    if settings.gate and result.model_version:
        challenger = registry.get(best_config.registered_model, result.model_version)
        outcome = tasks.gate(challenger, prepared.test, prepared.holdout, gate, run)
    return best, result, outcome


def _report(study, parent: Run, best, result: TrainingResult, outcome: Outcome | None) -> str:
    version = f"v{result.model_version}" if result.model_version else "not registered"
    decision = f"{outcome.decision.verdict}: {outcome.decision.reason}" if outcome else "not gated"
    values = "\n".join(f"| {k} | {v} |" for k, v in best.params.items())
    return f"""# Sweep `{study.study_name}`: trial {best.number} is best

{sweep.describe(study)}; objective {study.user_attrs["objective"]} = {best.value:.5g}.

| knob | value |
| --- | --- |
{values}

Its model: test accuracy {result.test_accuracy:.4f}, {version}; gate: {decision}.

MLflow: sweep run {parent.link()}; best trial's run `{result.run_id}`.
"""


def _end(parent: Run, study, ok: bool) -> None:
    parent.set_tags({"sweep.trials": sweep.describe(study)})
    parent.end(ok)


def run_name() -> str:
    from prefect.runtime import flow_run

    settings = flow_run.parameters.get("settings")
    if isinstance(settings, dict):
        settings = SweepSettings(**settings)
    settings = settings or SweepSettings()
    return f"sweep-{settings.resume or settings.name or Path(settings.space).stem}"


@flow(name="mnist-sweep", flow_run_name=run_name)
def sweep_flow(
    config: TrainConfig | None = None,
    settings: SweepSettings | None = None,
    gate: GateSettings | None = None,
    cluster: DaskSettings | None = None,
) -> SweepResult:
    """Run an Optuna study of `settings.trials` trials over a search space on Dask, each trial
    a training run nested under the sweep's MLflow run; publish and register the best trial's
    model, and with `--gate` judge it against the champion. `--resume NAME` finishes a study
    that a crash stopped, without repeating its finished trials."""
    logger = get_run_logger()
    settings, gate = settings or SweepSettings(), gate or GateSettings()
    url = absolute_sqlite(settings.storage or sweep.default_storage())
    cluster = cluster or DaskSettings()
    tidy()  # as every flow's MLflow run starts
    runner = task_runner(cluster.dask_address, cluster.dask_workers)
    with contextlib.ExitStack() as stack:
        stack.enter_context(runner)
        _ = runner.client  # first: an unreachable scheduler makes nothing in the study or MLflow
        study, config, space, objective, total, reclaimed = _open(config, settings, url)
        if reclaimed:
            logger.warning("trials %s were running when the sweep stopped: run again", reclaimed)
        parent = _parent(study, config)
        try:
            try:
                _run_trials(study, runner, config, space, objective, total, url, parent)
            finally:  # a trial still running now is lost with this driver: queued again
                lost = sweep.reclaim(study)
                close_runs(parent.run_id, parent.experiment_id, set(lost), "the driver stopped")
                stack.close()  # the local cluster ends with the trials
            _plots(study, parent)
            best, result, outcome = _best(study, config, settings, gate)
            value = float(best.values[0])  # a complete trial's
            parent.log_metrics({"best_value": value})
            parent.set_tags({"sweep.best_trial": str(best.number), "sweep.best_run": result.run_id})
            study.set_user_attr("published_run", result.run_id)
            create_markdown_artifact(
                _report(study, parent, best, result, outcome), key="sweep-result"
            )
        except BaseException:
            _end(parent, study, False)
            raise
    _end(parent, study, True)
    return SweepResult(
        study.study_name,
        url,
        parent.run_id,
        sweep.trials_table(study),
        best.number,
        value,
        dict(best.params),
        result,
        outcome,
        reclaimed,
    )


def _plots(study, parent: Run) -> None:
    """Optuna's figures in the sweep's run, and a table of the trials in Prefect."""
    import matplotlib.pyplot as plt

    for file, figure in sweep.plots(study).items():
        parent.log_figures({file: figure}, "optuna")
    plt.close("all")
    table = sweep.trials_table(study)
    create_table_artifact(table, key="sweep-trials", description=study.study_name)
