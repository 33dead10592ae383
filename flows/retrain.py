"""Scheduled retraining: train a challenger, gate it against the champion, keep the record.

`python -m flows.retrain` serves the flow on this machine with its weekly schedule (no work
pool or worker needed); `prefect.yaml` deploys it to a process work pool instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from prefect import flow, get_run_logger
from prefect.artifacts import create_markdown_artifact

import tasks
from flows.stale_runs import tracked_run
from flows.training import TrainingResult, gather, pipeline, run_name, summary
from mnist import registry
from mnist.errors import MnistError
from mnist.promotion import Decision, Outcome
from mnist.settings import GateSettings, TrainConfig


@dataclass(frozen=True)
class RetrainResult:
    """A challenger trained and judged, or (`unchanged`) the version that was already made from
    the same inputs, when the run ended early."""

    training: TrainingResult | None
    outcome: Outcome | None
    unchanged: registry.Version | None = None

    @property
    def decision(self) -> Decision | None:
        return self.outcome.decision if self.outcome else None

    @property
    def champion_version(self) -> str | None:
        if self.outcome:
            return self.outcome.champion_version
        champion = registry.champion(self.unchanged.name) if self.unchanged else None
        return champion.version if champion else None


def _why(reason: str | None) -> str:
    return f"Started because: {reason}.\n\n" if reason else ""


def _nothing_new(
    config: TrainConfig, same: registry.Version, digest: str, reason: str | None = None
) -> str:
    return f"""# Retraining: nothing new since {config.registered_model} v{same.version}

{_why(reason)}The data (MNIST and the added-data snapshot), the recipe and the code are those
that made v{same.version} (inputs digest `{digest[:16]}`), so this run trained nothing and
registered nothing. Add data (`mnist data add`), change the recipe, or pass `--retrain-unchanged`.

| | |
| --- | --- |
| v{same.version} test accuracy | {same.tags.get("test_accuracy", "-")} |
| v{same.version} holdout accuracy | {same.tags.get("holdout_accuracy", "-")} |
| v{same.version} decision | {same.tags.get("decision", "-")} |
| added data | `{same.tags.get("added_data_digest", "-")[:16]}` |
"""


def _report(config: TrainConfig, result: RetrainResult, reason: str | None = None) -> str:
    d = result.decision
    assert d is not None and result.training is not None
    verdict = "**promoted** to champion" if d.promote else "**rejected**; the champion stays"
    rows = "\n".join(f"| {k.replace('_', ' ')} | {v} |" for k, v in d.details.items())
    return f"""# Retraining: {config.registered_model} v{result.training.model_version} {verdict}

{_why(reason)}{d.reason}.

| gate | value |
| --- | --- |
{rows}
| champion now | v{result.champion_version or "-"} |

{summary(config, result.training)}"""


@flow(name="mnist-retrain", flow_run_name=lambda: run_name("retrain"))
def retrain_flow(
    config: TrainConfig | None = None,
    gate: GateSettings | None = None,
    reason: str | None = None,
) -> RetrainResult:
    """Train a challenger and promote it to `champion` only if it passes the gate
    (`mnist.promotion`): MNIST test accuracy at least the floor, no loss to the champion on the
    added data's holdout, and more than the margin above it on one of them, on the same images.
    Ends early, registering nothing, when a version was made from the same inputs. `reason`
    says why it runs (the label trigger of `prefect.yaml` sets it; None: a schedule or a
    person), in the log and the decision artifact."""
    config, gate = config or TrainConfig.from_profile(), gate or GateSettings()
    if reason:
        get_run_logger().info("retraining because: %s", reason)
    if not config.register_model:
        raise MnistError("retraining registers its challenger: drop --no-register")
    inputs = gather(config)
    same = (
        None
        if gate.retrain_unchanged
        else tasks.same_inputs(config.registered_model, inputs.digest)
    )
    if same is not None:
        create_markdown_artifact(
            key="retrain-decision",
            markdown=_nothing_new(config, same, inputs.digest, reason),
            description=f"Nothing new since v{same.version}: nothing trained or registered",
        )
        return RetrainResult(None, None, same)
    with tracked_run(config.experiment, run_name("retrain")) as run:
        training, prepared = pipeline(config, run, inputs)
        challenger = registry.get(config.registered_model, training.model_version)
        outcome = tasks.gate(challenger, prepared.test, prepared.holdout, gate, run)
        result = RetrainResult(training, outcome)
        create_markdown_artifact(
            key="retrain-decision",
            markdown=_report(config, result, reason),
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
