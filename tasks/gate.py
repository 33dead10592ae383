from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

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


def _lock_name(name: str) -> str:
    return f"{name}-champion-gate"


def _ensure_lock(name: str) -> None:
    """A Prefect global concurrency limit of 1 serialises gates across runs and workers."""
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(_lock_name(name), limit=1)


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
    name = challenger.name
    _ensure_lock(name)
    with concurrency(_lock_name(name), occupy=1, strict=True, timeout_seconds=3600):
        outcome = promotion.judge(challenger, test, settings)
    decision = outcome.decision
    metrics = {"gate.challenger_test_accuracy": outcome.challenger_accuracy,
               "gate.promoted": decision.promote}  # fmt: skip
    if outcome.incumbent_accuracy is not None:
        metrics["gate.champion_test_accuracy"] = outcome.incumbent_accuracy
    run.log_metrics(metrics)
    run.set_tags({"gate.decision": decision.verdict, "gate.compared_to": outcome.compared_to})
    get_run_logger().info("v%s %s: %s", challenger.version, decision.verdict, decision.reason)
    return outcome
