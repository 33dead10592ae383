import os
from collections.abc import Iterator
from contextlib import ExitStack, contextmanager

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE
from prefect.client.orchestration import get_client
from prefect.concurrency.sync import concurrency
from prefect.runtime import flow_run
from prefect.settings import PREFECT_API_URL

from mnist import promotion, registry
from mnist.env import TEMPORARY_PREFECT_API
from mnist.errors import MnistError, first_line
from mnist.event_names import GATE_ALERT, GATE_DECIDED
from mnist.preprocess import Arrays
from mnist.settings import AlertSettings, GateSettings
from mnist.tracking import Run
from tasks.card import decided


@task(name="register", task_run_name="register-{name}", cache_policy=NO_CACHE)
def register(model_uri: str, run_id: str, name: str, tags: dict[str, str]) -> registry.Version:
    """Register the logged model as a new version of `name`, tagged with its lineage."""
    version = registry.register(model_uri, run_id, tags, name)
    get_run_logger().info("registered %s version %s", name, version.version)
    return version


@task(name="same-inputs", task_run_name="same-inputs-{name}", cache_policy=NO_CACHE)
def same_inputs(name: str, digest: str) -> registry.Version | None:
    """The version of `name` already made from these inputs (data, added data, recipe, code),
    if any: a retraining would only register a duplicate of it."""
    same = registry.with_inputs(name, digest)
    logger = get_run_logger()
    if same is None:
        logger.info("no version of %s was made from these inputs (%s)", name, digest[:12])
    else:
        logger.info(
            "nothing new since %s v%s: same data, recipe and code (%s)",
            name,
            same.version,
            digest[:12],
        )
    return same


@contextmanager
def _across_workers(name: str, settings: GateSettings) -> Iterator[None]:
    """With a Prefect server, whose workers may sit on other machines than the lock file,
    Prefect's global concurrency limit too. Its slot is leased: when a holder dies, the
    server's repossessor frees it once the lease (60 s, renewed while the gate runs) ends.
    Prefect's temporary API has no repossessor, and needs none: the lock file is enough."""
    if PREFECT_API_URL.value() in (None, "", os.environ.get(TEMPORARY_PREFECT_API)):
        yield
        return
    limit = promotion.gate_name(name)
    with get_client(sync_client=True) as client:
        client.upsert_global_concurrency_limit_by_name(limit, limit=1)
    with ExitStack() as stack:
        try:
            stack.enter_context(
                concurrency(
                    limit,
                    occupy=1,
                    strict=True,
                    lease_duration=60,
                    timeout_seconds=settings.wait_seconds,
                )
            )
        except TimeoutError as exc:
            raise MnistError(
                f"{limit} is held on the Prefect server at {PREFECT_API_URL.value()}"
                f"; gave up after {settings.wait_seconds:.0f} s"
            ) from exc
        yield


def rejections(name: str) -> int:
    """Challengers of `name` the gate rejected in a row, newest first (versions it never judged
    are passed over; the last promotion ends the count)."""
    streak = 0
    for version in registry.versions(name):
        decision = version.tags.get("decision")
        if decision == "rejected":
            streak += 1
        elif decision is not None:
            break
    return streak


def announce(outcome: promotion.Outcome) -> None:
    """Emit `mnist.gate.decided` with the decision and the rejection streak; a failure to
    count or send is logged, never raised: the decision is already recorded."""
    from prefect.events import emit_event

    logger = get_run_logger()
    name, decision = outcome.challenger.name, outcome.decision
    try:
        streak = rejections(name)
        limit = AlertSettings().rejections
        champion = outcome.champion_version
        payload = {
            "model": name,
            "decision": decision.verdict,
            "reason": decision.reason,
            "challenger": outcome.challenger.version,
            "champion": champion,
            "compared_to": outcome.compared_to,
            "streak": streak,
            "alert_after": limit,
            "challenger_test_accuracy": outcome.challenger_accuracy,
            "champion_test_accuracy": outcome.incumbent_accuracy,
        }
        resource = {
            "prefect.resource.id": f"mnist.gate.{name}",
            "prefect.resource.name": f"champion gate of {name}",
            GATE_ALERT: "true" if streak >= limit else "false",
        }
        emit_event(GATE_DECIDED, resource=resource, payload=payload)
    except Exception as exc:  # MLflow, a bad MNIST_ALERT_ variable, the events client
        logger.warning("event %s not sent: %s", GATE_DECIDED, first_line(exc))
        return
    if streak >= limit:
        logger.warning("the gate rejected %d challengers of %s in a row", streak, name)


@task(
    name="champion-gate",
    task_run_name="gate-{challenger.name}-v{challenger.version}",
    cache_policy=NO_CACHE,
)
def gate(
    challenger: registry.Version, test: Arrays, holdout: Arrays, settings: GateSettings, run: Run
) -> promotion.Outcome:
    """The champion/challenger rule (`mnist.promotion`) on MNIST test and the added holdout,
    one gate at a time per model; its outcome goes to the run's metrics and tags."""
    logger = get_run_logger()

    def waiting(holder, waited: float) -> None:
        logger.info(
            "waiting for the champion gate, held by %s (%.0f s so far)",
            holder or "another process",
            waited,
        )

    what = f"flow run {flow_run.name} ({flow_run.id})"
    with (
        promotion.lock(challenger.name, settings, what, waiting),
        _across_workers(challenger.name, settings),
    ):
        outcome = promotion.judge(challenger, test, settings, holdout)
    decision = outcome.decision
    scores = {
        "gate.challenger_test_accuracy": outcome.challenger_accuracy,
        "gate.champion_test_accuracy": outcome.incumbent_accuracy,
        "gate.challenger_holdout_accuracy": outcome.challenger_holdout,
        "gate.champion_holdout_accuracy": outcome.incumbent_holdout,
    }
    metrics = {k: v for k, v in scores.items() if v is not None}
    metrics["gate.promoted"] = float(decision.promote)
    run.log_metrics(metrics)
    run.set_tags({"gate.decision": decision.verdict, "gate.compared_to": outcome.compared_to})
    decided(challenger)  # the model card's gate section; never raises
    logger.info("v%s %s: %s", challenger.version, decision.verdict, decision.reason)
    announce(outcome)
    return outcome
