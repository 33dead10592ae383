"""The ensemble flow: K members of one recipe, each with its own seed, trained at once as
Prefect tasks on Dask, each in an MLflow run nested under the ensemble's; then one model that
averages their probabilities is published and registered as a training run's model is."""

from __future__ import annotations

import tempfile
from pathlib import Path

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

from flows.cluster import task_runner, workers_of
from flows.stale_runs import tracked_run
from flows.training import TrainingResult, publish_network, summary
from mnist import data, tracking
from mnist.addresses import absolute_sqlite
from mnist.errors import MnistError
from mnist.settings import DaskSettings, EnsembleSettings, TrainConfig
from tasks.ensemble import member
from tasks.remote import load_network

MEMBERS_TAG = "ensemble.members"
"""The members' MLflow runs, comma-separated: on the ensemble's run and its version."""


def run_name() -> str:
    from prefect.runtime import flow_run

    from flows.training import config_of

    settings = flow_run.parameters.get("settings")
    members = getattr(settings, "members", None) or (settings or {}).get("members", 3)
    config = config_of(flow_run.parameters)
    return f"ensemble-{members}x{config.model}-e{config.epochs}"


@flow(name="mnist-ensemble", flow_run_name=run_name)
def ensemble_flow(
    config: TrainConfig | None = None,
    settings: EnsembleSettings | None = None,
    cluster: DaskSettings | None = None,
) -> TrainingResult:
    """Train `settings.members` networks of `config`'s recipe with their own seeds at once on
    Dask, and register one model averaging their probabilities: raw pixels in, the same
    signature as any version, its card naming the members' runs."""
    logger = get_run_logger()
    config, settings = config or TrainConfig.from_profile(), settings or EnsembleSettings()
    cluster = cluster or DaskSettings()
    try:
        seeds = settings.member_seeds(config.seed)
    except ValueError as exc:
        raise MnistError(str(exc)) from None
    # members learn MNIST alone, read where this process reads it, wherever a worker runs
    config = TrainConfig(
        **{**config.model_dump(), "added_data": False, "data_dir": data.where(config.data_dir)}
    )
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
            members = [f.result() for f in futures]  # a member that failed fails the ensemble
            result = _publish(config, run, [run_id for run_id, _ in members], seeds)
            create_markdown_artifact(
                key="ensemble-summary",
                markdown=summary(config, result)
                + "\n\nMembers: "
                + ", ".join(f"`{r}` (val {a:.4f})" for r, a in members),
                description="The ensemble's test metrics and its members' MLflow runs",
            )
    return result


def _publish(config: TrainConfig, run, member_runs: list[str], seeds: list[int]):
    """The members' networks, averaged, published in the ensemble's run; its training curves
    are the members' mean."""
    import pandas as pd

    from mnist import ensemble

    with tempfile.TemporaryDirectory(prefix="mnist-ensemble-") as scratch:
        nets, histories = zip(
            *(load_network(r, Path(scratch) / r) for r in member_runs), strict=True
        )
    members = ",".join(member_runs)
    run.set_tags({MEMBERS_TAG: members, "ensemble.seeds": ",".join(map(str, seeds))})
    history = pd.DataFrame(pd.concat(histories).groupby("epoch", as_index=False).mean())
    return publish_network(
        config, run, ensemble.average(list(nets)), history, {MEMBERS_TAG: members}
    )[0]
