"""`mnist models`, `mnist recipes` and `mnist doctor`: what is available, and repairs after a
crash."""

from __future__ import annotations

import argparse

from app.cli.options import add_command
from app.cli.prefect_setup import start_prefect


def models(args: argparse.Namespace) -> None:
    from mnist import models

    for name in sorted(models.ARCHITECTURES):
        net = models.build(name)
        doc = (models.ARCHITECTURES[name].__doc__ or "").strip().splitlines()[0]
        print(f"{name:10} {net.count_params():>8,} parameters  {doc}")


def recipes(args: argparse.Namespace) -> None:
    from mnist.settings import load_recipe, recipe_names, recipe_path

    for name in recipe_names():
        recipe = load_recipe(name)
        print(f"{name:10} {recipe.model:10} {recipe.epochs:>3} epochs  {recipe_path(name)}")


def doctor(args: argparse.Namespace) -> None:
    from flows.stale_runs import close_stale_runs
    from mnist import locks, promotion, registry, tracking

    print(f"store: {tracking.store_uri()}")
    stale, crashed = close_stale_runs(api_needed=lambda: start_prefect()())
    for flow_run in crashed:
        print(f"marked CRASHED: Prefect flow run {flow_run}")
    for run in stale:
        why = (
            f"its Prefect flow run ended {run.flow_state}"
            if run.flow_state
            else (f"its process {run.pid} is gone")
        )
        print(f"closed: MLflow run {run.run_id} ({run.name}): {why}")
    for model in tracking.call(tracking.client().search_registered_models):
        if registry.repair_history(model.name):
            print(f"recorded the last champion move of {model.name}, lost in a crash")
    for path in promotion.gate_locks():
        holder = locks.holder(path)
        print(f"{path.stem}: {f'held by {holder}' if holder else 'free'}")
    if not stale:
        print("no runs left open by killed processes")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    add_command(commands, "models", models, "list the model architectures")
    add_command(commands, "recipes", recipes, "list the training recipes (--profile NAME)")
    add_command(
        commands, "doctor", doctor, "close runs left open by killed processes; show the gate locks"
    )
