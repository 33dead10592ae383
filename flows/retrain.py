"""Scheduled retraining: train a challenger, gate it against the champion, keep the record.

`python -m flows.retrain` serves the flow on this machine with its weekly schedule (no work
pool or worker needed); `prefect.yaml` deploys it to a process work pool instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prefect import flow
from prefect.artifacts import create_markdown_artifact

import tasks
from flows.training import TrainingResult, mlflow_run, pipeline, run_name, summary
from mnist import registry
from mnist.errors import MnistError
from mnist.promotion import Decision, Outcome
from mnist.settings import GateSettings, TrainConfig


@dataclass(frozen=True)
class RetrainResult:
    training: TrainingResult
    outcome: Outcome

    @property
    def decision(self) -> Decision:
        return self.outcome.decision

    @property
    def champion_version(self) -> str | None:
        return self.outcome.champion_version


def _report(config: TrainConfig, result: RetrainResult) -> str:
    d = result.decision
    verdict = "**promoted** to champion" if d.promote else "**rejected**; the champion stays"
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in d.details.items())
    return f"""# Retraining: {config.registered_model} v{result.training.model_version} {verdict}

{d.reason}.

| gate | value |
| --- | --- |
{rows}
| champion now | v{result.champion_version or "-"} |

{summary(config, result.training)}"""


@flow(name="mnist-retrain", flow_run_name=lambda: run_name("retrain"))
def retrain_flow(
    config: TrainConfig | None = None, gate: GateSettings | None = None
) -> RetrainResult:
    """Train a challenger and promote it to `champion` only if it passes the gate
    (`mnist.promotion`): test accuracy at least the floor and more than the margin above the
    champion's, on the same images."""
    config, gate = config or TrainConfig(), gate or GateSettings()
    if not config.register_model:
        raise MnistError("retraining registers its challenger: drop --no-register")
    with mlflow_run(config, run_name("retrain")) as run:
        training, test = pipeline(config, run)
        challenger = registry.get(config.registered_model, training.model_version)
        result = RetrainResult(training, tasks.gate(challenger, test, gate, run))
        create_markdown_artifact(
            key="retrain-decision",
            markdown=_report(config, result),
            description="The champion/challenger decision, metrics and the MLflow run",
        )
    return result


if __name__ == "__main__":
    retrain_flow.serve(
        name="mnist-retrain",
        cron=os.environ.get("MNIST_RETRAIN_CRON", "0 3 * * 1"),
        tags=["mnist", "retrain", "scheduled"],
        description="Weekly retraining with a champion/challenger gate (served locally).",
    )
