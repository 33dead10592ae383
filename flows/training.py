"""The training flow: ingest -> preprocess -> validate -> train -> evaluate -> plot -> log
the model -> register it. One flow run is one MLflow run."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

import tasks
from flows.api import close_stale_runs
from mnist.preprocess import Arrays
from mnist.settings import TrainConfig
from mnist.tracking import Run


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


def config_of(parameters: dict) -> TrainConfig:
    """The run's config from its flow parameters (an instance, a dict, or absent)."""
    config = parameters.get("config")
    return config if isinstance(config, TrainConfig) else TrainConfig(**(config or {}))


def run_name(prefix: str) -> str:
    config = config_of(flow_run.parameters)
    return f"{prefix}-{config.model}-e{config.epochs}-s{config.seed}"


@contextmanager
def mlflow_run(config: TrainConfig, name: str) -> Iterator[Run]:
    """An MLflow run for the flow run, FINISHED if the body succeeds, else FAILED. Runs left
    RUNNING by killed processes on this host are closed first (MLflow and Prefect)."""
    logger = get_run_logger()
    try:
        stale, crashed = close_stale_runs()
    except Exception as exc:  # tidying up after others must not stop this run
        logger.warning("could not close runs left open by killed processes: %s", exc)
    else:
        if stale:
            logger.warning("closed %d run(s) left open by killed processes: %s (and %d Prefect "
                           "flow run(s))", len(stale), ", ".join(s.run_id for s in stale),
                           len(crashed))  # fmt: skip
    run = Run.start(config.experiment, name, {"prefect.flow_run_id": str(flow_run.id or "")})
    logger.info("MLflow run %s in experiment %r", run.run_id, config.experiment)
    ok = False
    try:
        yield run
        ok = True
    finally:
        run.end(ok)


def pipeline(config: TrainConfig, run: Run) -> tuple[TrainingResult, Arrays]:
    """Every stage, logging to `run`; returns the result and the test split it was judged on."""
    run.log_params(config.params())
    dataset = tasks.ingest(config.data_dir)
    run.set_tags({"dataset_digest": dataset.digest, "data_source": dataset.train.source})
    sources = {"train": dataset.train.source, "val": dataset.train.source,
               "test": dataset.test.source}  # fmt: skip
    prepared = tasks.preprocess(dataset, config)
    prepared = tasks.validate(prepared, config.nan_policy, sources, run)
    net, history = tasks.train(config, prepared, run)
    # Evaluated first: MLflow gives the logged model the run's metrics at logging time.
    evaluation = tasks.evaluate(net, prepared.test, run)
    # Drawing the plots overlaps saving the model; both finish before registering.
    plotted = tasks.plot.submit(history, prepared.test.x, evaluation, run)
    model_uri = tasks.log_model(net, prepared.test.x[:5], run)
    plotted.result()
    version = None
    if config.register_model:
        lineage = {"test_accuracy": f"{evaluation.accuracy:.4f}", "git_commit": run.code_version,
                   "dataset_digest": dataset.digest}  # fmt: skip
        version = tasks.register(model_uri, run.run_id, config.registered_model, lineage).version
        run.set_tags({"registered_version": version})
    result = TrainingResult(
        run_id=run.run_id,
        model_uri=model_uri,
        model_version=version,
        test_loss=evaluation.loss,
        test_accuracy=evaluation.accuracy,
        test_samples=evaluation.samples,
        plots=run.artifact_location("plots"),
        dataset_digest=dataset.digest,
        mlflow_link=run.link(),
    )
    return result, prepared.test


def summary(config: TrainConfig, result: TrainingResult) -> str:
    version = f"{config.registered_model} v{result.model_version}" if result.model_version else "-"
    return f"""# MNIST training run `{result.run_id}`

| metric | value |
| --- | --- |
| test accuracy | {result.test_accuracy:.4f} |
| test loss | {result.test_loss:.4f} |
| test images | {result.test_samples} |
| model | {config.model}, {config.epochs} epochs, batch {config.batch_size}, seed {config.seed} |
| registered | {version} |
| dataset digest | `{result.dataset_digest[:16]}` |

MLflow run: {result.mlflow_link}

Model: `{result.model_uri}`; plots: `{result.plots}`
"""


@flow(name="mnist-training", flow_run_name=lambda: run_name("train"))
def training_flow(config: TrainConfig | None = None) -> TrainingResult:
    """Train and evaluate a CNN on MNIST, logging everything to one MLflow run."""
    config = config or TrainConfig()
    with mlflow_run(config, run_name("train")) as run:
        result, _ = pipeline(config, run)
        create_markdown_artifact(
            key="training-summary",
            markdown=summary(config, result),
            description="Test metrics and where to find the MLflow run",
        )
    return result
