"""The ensemble flow: K members of one recipe, each with its own seed, trained at once as
Prefect tasks on Dask, each in an MLflow run nested under the ensemble's (or K models trained
before, `--from-models`); then one model that averages their probabilities is published and
registered as a training run's model is."""

from __future__ import annotations

import hashlib
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.cluster import task_runner, workers_of
from flows.stale_runs import tracked_run
from flows.training import TrainingResult, publish_network, summary
from mnist import data, members, tracking
from mnist.addresses import absolute_sqlite
from mnist.errors import MnistError
from mnist.settings import DaskSettings, EnsembleSettings, TrainConfig
from tasks.ensemble import existing, member
from tasks.remote import load_network

if TYPE_CHECKING:
    import keras
    import pandas as pd

MEMBERS_TAG = "ensemble.members"
"""The members' MLflow runs, comma-separated: on the ensemble's run and its version."""


def run_name() -> str:
    from prefect.runtime import flow_run

    from flows.training import config_of

    settings = flow_run.parameters.get("settings")
    if isinstance(settings, dict):
        settings = EnsembleSettings(**settings)
    settings = settings or EnsembleSettings()
    if settings.from_models:
        return f"ensemble-of-{len(settings.from_models.split(','))}-models"
    config = config_of(flow_run.parameters)
    return f"ensemble-{settings.members}x{config.model}-e{config.epochs}"


@flow(name="mnist-ensemble", flow_run_name=run_name)
def ensemble_flow(
    config: TrainConfig | None = None,
    settings: EnsembleSettings | None = None,
    cluster: DaskSettings | None = None,
) -> TrainingResult:
    """Train `settings.members` networks of `config`'s recipe with their own seeds at once on
    Dask (or take `settings.from_models`, trained before), and register one model averaging
    their probabilities: raw pixels in, the same signature as any version, its card naming the
    members' runs."""
    logger = get_run_logger()
    config, settings = config or TrainConfig.from_profile(), settings or EnsembleSettings()
    cluster = cluster or DaskSettings()
    try:
        refs = settings.member_refs() if settings.from_models else None
        seeds = settings.member_seeds(config.seed) if refs is None else []
    except ValueError as exc:
        raise MnistError(str(exc)) from None
    # members learn MNIST alone, read where this process reads it, wherever a worker runs
    config = TrainConfig(
        **{**config.model_dump(), "added_data": False, "data_dir": data.where(config.data_dir)}
    )
    if refs is not None:
        return _from_models(config, refs)
    runner = task_runner(cluster.dask_address, cluster.dask_workers)
    with runner:  # first: an unreachable scheduler makes nothing in MLflow
        logger.info("%d members on %d Dask worker(s)", len(seeds), workers_of(runner))
        with tracked_run(config.experiment, f"ensemble-{len(seeds)}x{config.model}") as run:
            store = absolute_sqlite(tracking.store_uri())
            futures = [
                runner.submit(
                    member,
                    {
                        "config": TrainConfig(**{**config.model_dump(), "seed": seed}),
                        "parent_run": run.run_id,
                        "tracking_uri": store,
                    },
                )
                for seed in seeds
            ]
            trained = [f.result() for f in futures]  # a member that failed fails the ensemble
            with tempfile.TemporaryDirectory(prefix="mnist-ensemble-") as scratch:
                nets, histories = zip(
                    *(load_network(r, Path(scratch) / r) for r, _ in trained), strict=True
                )
            member_runs = [run_id for run_id, _ in trained]
            shown = [f"`{r}` (val {'-' if a is None else f'{a:.4f}'})" for r, a in trained]
            return _publish(config, run, member_runs, seeds, list(nets), list(histories), shown)


def _from_models(config: TrainConfig, refs: list[str]) -> TrainingResult:
    """Average models trained before (`mnist.members`: checked before anything is loaded or
    made); the ensemble's recipe and data settings are theirs, its seed the first one's."""
    chosen = members.traced(refs)
    config = members.config(config, chosen)
    nets, histories = zip(*(existing(m) for m in chosen), strict=True)
    with tracked_run(config.experiment, f"ensemble-of-{len(chosen)}-models") as run:
        run.set_tags({"ensemble.models": ",".join(m.ref for m in chosen)})
        runs, seeds = [m.run_id for m in chosen], [m.seed for m in chosen]
        shown = [f"`{m.ref}` (run `{m.run_id}`)" for m in chosen]
        return _publish(config, run, runs, seeds, list(nets), list(histories), shown)


def _publish(
    config: TrainConfig,
    run,
    member_runs: list[str],
    seeds: list[int],
    nets: list[keras.Model],
    histories: list[pd.DataFrame],
    shown: list[str],
) -> TrainingResult:
    """The members' networks, averaged, published in the ensemble's run; its training curves
    are the members' mean. Its inputs are its members: a single run of the same recipe and
    seed is another model. The Prefect summary lists the members as `shown`."""
    import pandas as pd

    from mnist import ensemble

    runs = ",".join(member_runs)
    run.set_tags({MEMBERS_TAG: runs, "ensemble.seeds": ",".join(map(str, seeds))})
    history = pd.DataFrame(pd.concat(histories).groupby("epoch", as_index=False).mean())
    digest = hashlib.sha256(f"ensemble:{runs}".encode()).hexdigest()
    result, _ = publish_network(
        config, run, ensemble.average(nets), history, {MEMBERS_TAG: runs}, digest
    )
    create_markdown_artifact(
        key="ensemble-summary",
        markdown=f"{summary(config, result)}\n\nMembers: {', '.join(shown)}",
        description="The ensemble's test metrics and its members",
    )
    return result
