"""`mnist train` and `mnist retrain`: the training flows, and what they print."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from app.cli.options import add_command, settings
from app.cli.prefect_setup import start_prefect
from mnist.settings import GateSettings, TrainConfig

if TYPE_CHECKING:
    from flows.training import TrainingResult


def print_training(result: TrainingResult) -> None:
    """The run, its scores, its model and its plots, one per line."""
    version = f"v{result.model_version}" if result.model_version else "not registered"
    holdout = (
        f"holdout:        {result.holdout_accuracy:.4f} on {result.holdout_samples} added images\n"
        if result.holdout_accuracy is not None
        else ""
    )
    print(
        f"\nMLflow run:     {result.run_id}\n"
        f"test accuracy:  {result.test_accuracy:.4f} on {result.test_samples} images\n"
        f"{holdout}"
        f"test loss:      {result.test_loss:.4f}\n"
        f"model:          {result.model_uri} ({version})\n"
        f"plots:          {result.plots}"
    )


def train(args: argparse.Namespace) -> None:
    config = settings(args, TrainConfig)
    api_started = start_prefect()
    from prefect import tags

    import mnist.training  # noqa: F401  (TensorFlow, while the temporary API starts)
    from flows.training import training_flow

    api_started()
    with tags("mnist", "train", f"model:{config.model}"):
        print_training(training_flow(config))


def retrain(args: argparse.Namespace) -> None:
    config, gate = settings(args, TrainConfig), settings(args, GateSettings)
    api_started = start_prefect()
    from prefect import tags

    import mnist.training  # noqa: F401  (TensorFlow, while the temporary API starts)
    from flows.retrain import retrain_flow

    api_started()
    with tags("mnist", "retrain", f"model:{config.model}"):
        result = retrain_flow(config, gate)
    if result.unchanged is not None:
        print(
            f"nothing new since v{result.unchanged.version}: the data, recipe and code are "
            "those it was made from; nothing trained or registered (--retrain-unchanged "
            "to train anyway)"
        )
        print(f"champion:       v{result.champion_version or '-'}")
        return
    training, decision = result.training, result.decision
    assert training is not None and decision is not None  # not unchanged: trained and judged
    print_training(training)
    print(f"decision:       {decision.verdict}: {decision.reason}")
    print(f"champion:       v{result.champion_version or '-'}")


def add_parsers(commands: argparse._SubParsersAction) -> None:
    add_command(
        commands, "train", train, "run the training flow (Prefect) tracked in MLflow", TrainConfig
    )
    add_command(
        commands,
        "retrain",
        retrain,
        "train a challenger and promote it to champion if it passes the gate",
        TrainConfig,
        GateSettings,
    )
