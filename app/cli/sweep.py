"""`mnist sweep`: an Optuna study over a search space, its trials on Dask, and what it prints."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from app.cli.options import UsageError, add_command, settings
from app.cli.prefect_setup import start_prefect
from mnist.addresses import absolute_sqlite, safe_url
from mnist.settings import DaskSettings, GateSettings, SweepSettings, TrainConfig

if TYPE_CHECKING:
    from mnist.sweep_space import Space


def _checked(chosen: SweepSettings, config: TrainConfig) -> None:
    """A wrong space, a study name taken or unknown, a finished study: one line here, before
    Prefect, Dask or TensorFlow load."""
    if config.validation_split == 0:
        raise UsageError("--validation-split: a sweep scores its trials on it; give more than 0")
    from mnist import sweep as studies

    url = absolute_sqlite(chosen.storage or studies.default_storage())
    if chosen.resume:
        study = studies.load(chosen.resume, url)  # its SweepError names the studies there
        if run := study.user_attrs.get("published_run"):
            raise UsageError(
                f"--resume: study {chosen.resume!r} is finished (its best trial's model is in "
                f"MLflow run {run})"
            )
    elif chosen.name and chosen.name in studies.names(url):
        raise UsageError(f"--name: a study named {chosen.name!r} exists: --resume {chosen.name}")


def _space(chosen: SweepSettings) -> Space | None:
    """The space the trials vary (none for a resume: the study keeps its own)."""
    if chosen.resume:
        return None
    from mnist.sweep_space import load_space

    try:
        return load_space(chosen.space)
    except ValueError as exc:
        raise UsageError(f"--space: {exc}") from None


def space_defaults(args: argparse.Namespace, space: Space) -> None:
    """The space's base recipe, unless --profile says; and the split its trials are scored
    on, unless --validation-split or its variable says (the base recipe's own split is for
    final models: `best` holds none out)."""
    if args.profile is None:
        args.profile = space.base
    variable = f"{TrainConfig.model_config.get('env_prefix', '')}VALIDATION_SPLIT"
    if args.validation_split is None and variable.upper() not in map(str.upper, os.environ):
        args.validation_split = space.validation_split


def sweep(args: argparse.Namespace) -> None:
    chosen, gate = settings(args, SweepSettings), settings(args, GateSettings)
    cluster = settings(args, DaskSettings)
    if space := _space(chosen):
        space_defaults(args, space)
    config = settings(args, TrainConfig)
    _checked(chosen, config)
    api_started = start_prefect()
    from prefect import tags

    import mnist.training  # noqa: F401  (TensorFlow, while the temporary API starts)
    from flows.sweep import sweep_flow

    api_started()
    with tags("mnist", "sweep"):
        result = sweep_flow(config, chosen, gate, cluster)
    training = result.training
    print(f"\nstudy:          {result.name} in {safe_url(result.storage)}")
    if result.reclaimed:
        print(f"run again:      trials {result.reclaimed} (running when the sweep stopped)")
    for row in result.trials:
        values = "  ".join(f"{k}={row.get(k, '-')}" for k in result.best_params)
        print(f"trial {row['trial']:>3}:      {row['state']:<9} {row['value']}  {values}")
    print(f"best trial:     {result.best_trial} ({result.best_value:.5g})")
    print(f"MLflow run:     {result.run_id} (sweep), {training.run_id} (best trial)")
    version = f"v{training.model_version}" if training.model_version else "not registered"
    print(f"test accuracy:  {training.test_accuracy:.4f} on {training.test_samples} images")
    print(f"model:          {training.model_uri} ({version})")
    if result.outcome is not None:
        decision = result.outcome.decision
        print(f"decision:       {decision.verdict}: {decision.reason}")
        print(f"champion:       v{result.outcome.champion_version or '-'}")
    print(f"resume:         mnist sweep --resume {result.name}")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    add_command(
        commands,
        "sweep",
        sweep,
        "search a recipe's knobs with an Optuna study, its trials on Dask, tracked in MLflow",
        SweepSettings,
        DaskSettings,
        TrainConfig,
        GateSettings,
    )
