"""The training flow: ingest -> preprocess -> validate -> train -> evaluate -> plot.

One flow run is one MLflow run.
"""

from __future__ import annotations

from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact
from prefect.runtime import flow_run

import tasks
from mnist import tracking
from mnist.config import TrainConfig


@dataclass(frozen=True)
class TrainingResult:
    """What a training run produced, for the CLI and callers."""

    run_id: str
    model_uri: str
    test_loss: float
    test_accuracy: float
    test_samples: int
    plots: str  # where the PNGs are: a local directory or an artifact URI
    dataset_digest: str


def _run_name() -> str:
    config = flow_run.parameters.get("config") or TrainConfig()
    if isinstance(config, dict):
        config = TrainConfig(**config)
    return f"train-{config.model}-e{config.epochs}-s{config.seed}"


def _summary(config: TrainConfig, result: TrainingResult, link: str) -> str:
    return f"""# MNIST training run `{result.run_id}`

| metric | value |
| --- | --- |
| test accuracy | {result.test_accuracy:.4f} |
| test loss | {result.test_loss:.4f} |
| test images | {result.test_samples} |
| model | {config.model}, {config.epochs} epochs, batch {config.batch_size}, seed {config.seed} |
| dataset digest | `{result.dataset_digest[:16]}` |

MLflow run: {link}

Model: `{result.model_uri}`; plots: `{result.plots}`
"""


@flow(name="mnist-training", flow_run_name=_run_name)
def training_flow(config: TrainConfig | None = None) -> TrainingResult:
    """Train and evaluate a CNN on MNIST, logging everything to one MLflow run."""
    config = config or TrainConfig()
    logger = get_run_logger()
    run = tracking.start_run(
        config.experiment, _run_name(), {"prefect.flow_run_id": str(flow_run.id or "")}
    )
    logger.info("MLflow run %s in experiment %r", run.run_id, config.experiment)
    ok = False
    try:
        tracking.log_params(run.run_id, config.params())
        dataset = tasks.ingest(config.data_dir)
        tracking.set_tags(
            run.run_id, {"dataset_digest": dataset.digest, "data_source": dataset.train.source}
        )
        sources = {
            "train": dataset.train.source,
            "val": dataset.train.source,
            "test": dataset.test.source,
        }
        prepared = tasks.preprocess(dataset, config)
        prepared = tasks.validate(prepared, config.nan_policy, sources, run.run_id)
        net, history = tasks.train(config, prepared, run.run_id)
        evaluation = tasks.evaluate(net, prepared.test, run.run_id)
        tasks.plot(history, prepared.test.x, evaluation, run.run_id)
        model_uri = tasks.log_model(net, prepared.test.x[:5], run.run_id)
        result = TrainingResult(
            run_id=run.run_id,
            model_uri=model_uri,
            test_loss=evaluation.loss,
            test_accuracy=evaluation.accuracy,
            test_samples=evaluation.samples,
            plots=tracking.artifact_location(run, "plots"),
            dataset_digest=dataset.digest,
        )
        create_markdown_artifact(
            key="training-summary",
            markdown=_summary(config, result, tracking.run_link(run)),
            description="Test metrics and where to find the MLflow run",
        )
        ok = True
        return result
    finally:
        tracking.end_run(run.run_id, ok)
