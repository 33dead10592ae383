"""The training flow: ingest -> preprocess -> validate -> train -> evaluate -> plot -> log
the model -> register it. One flow run is one MLflow run."""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, cast

from prefect import flow
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

import tasks
from flows.stale_runs import tracked_run
from mnist import registry
from mnist.data import Added, Dataset, digest
from mnist.errors import MnistError
from mnist.preprocess import Prepared
from mnist.settings import TrainConfig
from mnist.tracking import Input, Run, code_version

if TYPE_CHECKING:
    import keras
    import pandas as pd


@dataclass(frozen=True)
class TrainingResult:
    """What a training run produced, for the CLI and callers."""

    run_id: str
    model_uri: str
    model_version: str | None  # in the registry, unless --no-register
    test_loss: float
    test_accuracy: float
    test_samples: int
    plots: str  # where the PNGs are: a local directory or an artifact URI
    dataset_digest: str
    mlflow_link: str
    holdout_accuracy: float | None = None  # on the added data's holdout, when there is one
    holdout_samples: int = 0
    added_data_digest: str = ""


@dataclass(frozen=True)
class Inputs:
    """What a run is made from: MNIST, the added-data snapshot, and the digest that names
    them with the recipe and the code (`TrainConfig.inputs_digest`)."""

    dataset: Dataset
    added: Added
    digest: str
    init_from: str | None = None  # `config.init_from`, resolved to the version it names now


def gather(config: TrainConfig) -> Inputs:
    """Read MNIST and the added-data snapshot; resolve the warm start's model (an alias to the
    version it points at), which the digest names too."""
    dataset = tasks.ingest(config.data_dir)
    added = tasks.added_data(config.datastore) if config.added_data else Added.nothing()
    init = config.init_from
    if init:
        with contextlib.suppress(MnistError):  # no such model: the warm start will say so
            init = registry.resolve(init)
    digest = config.inputs_digest(dataset.digest, added.digest, code_version(), init or "")
    return Inputs(dataset, added, digest, init)


def _lineage(config: TrainConfig, inputs: Inputs) -> list[Input]:
    """The datasets the run trains and is judged on, for MLflow's dataset tracking."""
    train, test, added = inputs.dataset.train, inputs.dataset.test, inputs.added
    tr = (train.images[: config.train_limit], train.targets[: config.train_limit])
    te = (test.images[: config.test_limit], test.targets[: config.test_limit])
    found = [
        Input("mnist-train", *tr, train.source, digest(*tr), "training"),
        Input("mnist-test", *te, test.source, digest(*te), "evaluation"),
    ]
    for split, context in ((added.train, "training"), (added.holdout, "evaluation")):
        if len(split):
            name = f"added-{'train' if context == 'training' else 'holdout'}"
            found.append(
                Input(
                    name,
                    split.images,
                    split.targets,
                    split.source,
                    added.digest,
                    context,
                    added.batches,
                )
            )
    return found


def config_of(parameters: dict) -> TrainConfig:
    """The run's config from its flow parameters (an instance, a dict, or absent)."""
    config = parameters.get("config")
    return config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))


def run_name(prefix: str) -> str:
    config = config_of(flow_run.parameters)
    return f"{prefix}-{config.model}-e{config.epochs}-s{config.seed}"


def describe(config: TrainConfig, run: Run, inputs: Inputs) -> None:
    """The run's settings, what it is made from (tags) and its datasets (MLflow's lineage)."""
    run.log_params(config.params())
    dataset, added = inputs.dataset, inputs.added
    run.set_tags(
        {
            "dataset_digest": dataset.digest,
            "data_source": dataset.train.source,
            "added_data_digest": added.digest or "none",
            "inputs_digest": inputs.digest,
            "added_batches": ",".join(map(str, added.batches)) or "none",
        }
    )
    run.log_inputs(_lineage(config, inputs))


def sources(inputs: Inputs) -> dict[str, str]:
    """Where each split comes from, for the validation report."""
    dataset, added = inputs.dataset, inputs.added
    return {
        "train": dataset.train.source,
        "val": dataset.train.source,
        "test": dataset.test.source,
        "holdout": added.holdout.source,
    }


def pipeline(config: TrainConfig, run: Run, inputs: Inputs) -> tuple[TrainingResult, Prepared]:
    """Every stage, logging to `run`; returns the result and the splits it was judged on."""
    describe(config, run, inputs)
    # cast: Prefect's overloads take keras' Model, of unknown bases, for a coroutine
    init = cast("keras.Model | None", tasks.warm_start(config, inputs.init_from, inputs.added, run))
    prepared = tasks.preprocess(inputs.dataset, inputs.added, config, warm=init is not None)
    prepared = tasks.validate(prepared, config.nan_policy, sources(inputs), run)
    net, history = tasks.train(config, prepared, run, init)
    return publish(config, run, inputs, net, history, prepared), prepared


def publish(
    config: TrainConfig,
    run: Run,
    inputs: Inputs,
    net: keras.Model,
    history: pd.DataFrame,
    prepared: Prepared,
    tags: dict[str, str] | None = None,
) -> TrainingResult:
    """A trained network's scores, plots and model in `run`, registered (unless
    `--no-register`) with its lineage and `tags`, and its card."""
    dataset, added = inputs.dataset, inputs.added
    # Evaluated first: MLflow gives the logged model the run's metrics at logging time.
    evaluation = tasks.evaluate(net, prepared.test, run)
    holdout = (
        tasks.evaluate(net, prepared.holdout, run, "holdout") if len(prepared.holdout) else None
    )
    # Drawing the plots overlaps saving the model; both finish before registering.
    plotted = tasks.plot.submit(history, prepared.test.x, evaluation, run, holdout)
    model_uri, onnx_tags = tasks.log_model(net, prepared.test.x, run)
    plotted.result()
    version = None
    if config.register_model:
        lineage = {
            "test_accuracy": f"{evaluation.accuracy:.4f}",
            "git_commit": run.code_version,
            "dataset_digest": dataset.digest,
            "added_data_digest": added.digest or "none",
            "inputs_digest": inputs.digest,
            **onnx_tags,
            **(tags or {}),
            "card": "pending",  # until tasks.card writes it: a crash before leaves it so
        }
        if holdout is not None:
            lineage["holdout_accuracy"] = f"{holdout.accuracy:.4f}"
        version = tasks.register(model_uri, run.run_id, config.registered_model, lineage).version
        run.set_tags({"registered_version": version})
        tasks.card(net, config, prepared, evaluation, holdout, dataset, added, run, version)
    return TrainingResult(
        run_id=run.run_id,
        model_uri=model_uri,
        model_version=version,
        test_loss=evaluation.loss,
        test_accuracy=evaluation.accuracy,
        test_samples=evaluation.samples,
        plots=run.artifact_location("plots"),
        dataset_digest=dataset.digest,
        mlflow_link=run.link(),
        holdout_accuracy=holdout.accuracy if holdout is not None else None,
        holdout_samples=holdout.samples if holdout is not None else 0,
        added_data_digest=added.digest,
    )


def publish_network(
    config: TrainConfig,
    run: Run,
    net: keras.Model,
    history: pd.DataFrame,
    tags: dict[str, str],
    digest: str | None = None,
) -> tuple[TrainingResult, Prepared]:
    """A network trained elsewhere (a sweep's trial, an ensemble's members) published in `run`
    as a training run publishes its own: what it is made from, scored on `config`'s splits;
    `digest` names its inputs when `config`'s does not (an ensemble's members). Returns the
    result and those splits."""
    inputs = gather(config)
    inputs = replace(inputs, digest=digest) if digest else inputs
    describe(config, run, inputs)
    prepared = tasks.preprocess(inputs.dataset, inputs.added, config)
    prepared = tasks.validate(prepared, config.nan_policy, sources(inputs), run)
    return publish(config, run, inputs, net, history, prepared, tags), prepared


def summary(config: TrainConfig, result: TrainingResult) -> str:
    version = f"{config.registered_model} v{result.model_version}" if result.model_version else "-"
    holdout = (
        f"{result.holdout_accuracy:.4f} on {result.holdout_samples} images"
        if result.holdout_accuracy is not None
        else "-"
    )
    added = f"snapshot `{result.added_data_digest[:16]}`" if result.added_data_digest else "none"
    return f"""# MNIST training run `{result.run_id}`

| metric | value |
| --- | --- |
| test accuracy | {result.test_accuracy:.4f} |
| test loss | {result.test_loss:.4f} |
| test images | {result.test_samples} |
| added-data holdout accuracy | {holdout} |
| added data | {added} |
| model | {config.model}, {config.epochs} epochs, batch {config.batch_size}, seed {config.seed} |
| registered | {version} |
| dataset digest | `{result.dataset_digest[:16]}` |

MLflow run: {result.mlflow_link}

Model: `{result.model_uri}`; plots: `{result.plots}`
"""


@flow(name="mnist-training", flow_run_name=lambda: run_name("train"))
def training_flow(config: TrainConfig | None = None) -> TrainingResult:
    """Train and evaluate a CNN on MNIST, logging everything to one MLflow run."""
    config = config or TrainConfig.from_profile()
    inputs = gather(config)
    with tracked_run(config.experiment, run_name("train")) as run:
        result, _ = pipeline(config, run, inputs)
        create_markdown_artifact(
            key="training-summary",
            markdown=summary(config, result),
            description="Test metrics and where to find the MLflow run",
        )
    return result
