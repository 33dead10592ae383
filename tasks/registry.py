import numpy as np
from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency

from mnist import evaluation, inference, registry, tracking
from mnist.preprocess import Arrays


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


def _accuracy(uri: str, test: Arrays) -> float:
    model = inference.load_model(uri)
    raw = Arrays(test.x.reshape(-1, 28, 28) * np.float32(255.0), test.y)
    return evaluation.evaluate(model, raw).accuracy


@task(
    name="champion-gate",
    task_run_name="gate-{challenger.name}-v{challenger.version}",
    cache_policy=NO_CACHE,
)
def gate(
    challenger: registry.Version, test: Arrays, floor: float, margin: float, run_id: str
) -> registry.Decision:
    """Evaluate champion and challenger on the same test images and move `champion` only
    when the challenger passes the floor and beats it. One gate at a time per model."""
    logger = get_run_logger()
    name = challenger.name
    _ensure_lock(name)
    with concurrency(_lock_name(name), occupy=1, strict=True, timeout_seconds=3600):
        incumbent = registry.champion(name)
        challenger_acc = _accuracy(challenger.uri, test)
        incumbent_acc = _accuracy(incumbent.uri, test) if incumbent else None
        decision = registry.decide(challenger_acc, incumbent_acc, floor, margin)
        verdict = "promoted" if decision.promote else "rejected"
        compared_to = incumbent.version if incumbent else "none"
        tags = {"decision": verdict, "decision_reason": decision.reason,
                "compared_to_version": compared_to, **decision.details}  # fmt: skip
        registry.tag_version(name, challenger.version, tags)
        if decision.promote:
            registry.set_champion(name, challenger.version, verdict, decision.reason, tags)
        else:
            registry.record(name, verdict, challenger.version, compared_to, decision.reason, tags)
    metrics = {"gate.challenger_test_accuracy": challenger_acc, "gate.promoted": decision.promote}
    if incumbent_acc is not None:
        metrics["gate.champion_test_accuracy"] = incumbent_acc
    tracking.log_metrics(run_id, metrics)
    tracking.set_tags(run_id, {"gate.decision": verdict, "gate.compared_to": compared_to})
    logger.info("v%s %s: %s", challenger.version, verdict, decision.reason)
    return decision
