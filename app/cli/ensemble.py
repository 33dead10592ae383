"""`mnist ensemble`: members trained at once on Dask, registered as one averaging model."""

from __future__ import annotations

import argparse

from app.cli.options import UsageError, add_command, settings
from app.cli.prefect_setup import start_prefect
from app.cli.training import print_training
from mnist.settings import DaskSettings, EnsembleSettings, TrainConfig


def ensemble(args: argparse.Namespace) -> None:
    config, chosen = settings(args, TrainConfig), settings(args, EnsembleSettings)
    cluster = settings(args, DaskSettings)
    try:
        refs = chosen.member_refs() if chosen.from_models else None
        seeds = chosen.member_seeds(config.seed) if refs is None else []
    except ValueError as exc:
        raise UsageError(str(exc)) from None
    if refs is not None:
        if chosen.model_fields_set & {"members", "seeds"}:
            raise UsageError("--members, --seeds: the models of --from-models give them")
        from mnist import members

        # a wrong reference is one line, before Prefect; and the tags name the members' model
        config = members.config(config, members.traced(refs))
    api_started = start_prefect()
    from prefect import tags

    import mnist.training  # noqa: F401  (TensorFlow, while the temporary API starts)
    from flows.ensemble import ensemble_flow

    api_started()
    with tags("mnist", "ensemble", f"model:{config.model}"):
        result = ensemble_flow(config, chosen, cluster)
    print_training(result)
    if refs is None:
        print(f"members:        {len(seeds)}, seeds {', '.join(map(str, seeds))}")
    else:
        print(f"members:        {len(refs)}: {', '.join(refs)}")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    add_command(
        commands,
        "ensemble",
        ensemble,
        "train several networks of one recipe at once on Dask (or take models trained before) "
        "and register them as one model that averages their probabilities",
        EnsembleSettings,
        DaskSettings,
        TrainConfig,
    )
