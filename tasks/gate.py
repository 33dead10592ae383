from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.runtime import flow_run

from mnist import promotion, registry
from mnist.preprocess import Arrays
from mnist.settings import GateSettings
from mnist.tracking import Run


@task(name="register", task_run_name="register-{name}", cache_policy=NO_CACHE)
def register(model_uri: str, run_id: str, name: str, tags: dict[str, str]) -> registry.Version:
    """Register the logged model as a new version of `name`, tagged with its lineage."""
    version = registry.register(model_uri, run_id, tags, name)
    get_run_logger().info("registered %s version %s", name, version.version)
    return version


@task(
    name="champion-gate",
    task_run_name="gate-{challenger.name}-v{challenger.version}",
    cache_policy=NO_CACHE,
)
def gate(
    challenger: registry.Version, test: Arrays, settings: GateSettings, run: Run
) -> promotion.Outcome:
    """The champion/challenger rule (`mnist.promotion`), one gate at a time per model; its
    outcome goes to the run's metrics and tags."""
    logger = get_run_logger()

    def waiting(holder, waited: float) -> None:
        logger.info("waiting for the champion gate, held by %s (%.0f s so far)",
                    holder or "another process", waited)  # fmt: skip

    what = f"flow run {flow_run.name} ({flow_run.id})"
    with promotion.lock(challenger.name, settings, what, waiting):
        outcome = promotion.judge(challenger, test, settings)
    decision = outcome.decision
    metrics = {"gate.challenger_test_accuracy": outcome.challenger_accuracy,
               "gate.promoted": decision.promote}  # fmt: skip
    if outcome.incumbent_accuracy is not None:
        metrics["gate.champion_test_accuracy"] = outcome.incumbent_accuracy
    run.log_metrics(metrics)
    run.set_tags({"gate.decision": decision.verdict, "gate.compared_to": outcome.compared_to})
    logger.info("v%s %s: %s", challenger.version, decision.verdict, decision.reason)
    return outcome
