"""The automations this project creates on a Prefect server: the one that crashes flow runs
whose heartbeats stopped, and the alerts (docs/operations/alerts.md).

Alerts go through one notification block, `mnist-alerts`, made from `MNIST_ALERT_URL`: an
http(s) URL becomes Prefect's `CustomWebhookNotificationBlock` (a JSON post); any other URL goes
to apprise through Prefect's `SlackWebhook` block, which hands URLs that are not Slack's to
apprise unchanged (Prefect 3.9 ships no block for a bare apprise URL, and the server can only
load block classes it ships). Three automations use it: a run of one of our deployments failed
or crashed, the monitor found drift, the gate rejected `MNIST_ALERT_REJECTIONS` in a row.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mnist.errors import MnistError
from mnist.event_names import GATE_ALERT, GATE_DECIDED, MONITOR

if TYPE_CHECKING:
    from prefect.events.schemas.automations import AutomationCore

ZOMBIES = "mnist: crash flow runs that stopped beating"
HEARTBEAT_SECONDS = 30
"""How often a flow run of a deployment says it lives (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set
for workers; Prefect's floor is 30 s); after three missed beats the automation `ZOMBIES`
crashes it."""
ZOMBIE_SECONDS = 3 * HEARTBEAT_SECONDS
"""How long `ZOMBIES` waits for a heartbeat before it crashes the run: three missed beats."""

BLOCK = "mnist-alerts"
"""The notification block every alert goes through."""
FAILED = "mnist: alert when a deployment's run fails or crashes"
DRIFT = "mnist: alert when the monitor finds drift"
REJECTED = "mnist: alert when the gate keeps rejecting"
ALERTS = (FAILED, DRIFT, REJECTED)
DEPLOYMENTS = "mnist-*"
"""Our deployments' names in prefect.yaml (mnist-retrain, -train, -sweep and -monitor)."""


def ensure_zombie_detection(seconds: int = ZOMBIE_SECONDS) -> bool:
    """Create, on the configured Prefect server, the automation that marks flow runs CRASHED
    when their heartbeats stop for `seconds` (a machine or worker died): Prefect's documented
    recipe for a self-hosted server. True if it was created now, False if it was there.

    `seconds` must exceed HEARTBEAT_SECONDS, or live runs crash between two beats; the stack
    keeps the default (tests take a shorter window to see a crash sooner)."""
    if seconds <= HEARTBEAT_SECONDS:
        raise ValueError(f"a zombie window of {seconds} s is not past a {HEARTBEAT_SECONDS} s beat")
    from datetime import timedelta

    from prefect.automations import Automation
    from prefect.client.schemas.objects import StateType
    from prefect.events.actions import ActionTypesOrUnknown, ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        # async_dispatch runs it synchronously here; Prefect's overloads declare only async
        Automation.read(name=ZOMBIES)  # pyright: ignore[reportUnusedCoroutine]
        return False
    except ValueError:
        pass
    over = ("Completed", "Failed", "Cancelled", "Crashed")
    message = f"no heartbeat for {seconds} s: its process died"
    # name and force given: pyright does not see Prefect's positional `Field(None)` defaults
    crash = ChangeFlowRunState(name=None, state=StateType.CRASHED, message=message, force=False)
    actions: list[ActionTypesOrUnknown] = [crash]
    Automation(
        name=ZOMBIES,
        trigger=EventTrigger(
            after={"prefect.flow-run.heartbeat"},
            expect={"prefect.flow-run.heartbeat", *(f"prefect.flow-run.{s}" for s in over)},
            match=ResourceSpecification({"prefect.resource.id": ["prefect.flow-run.*"]}),
            for_each={"prefect.resource.id"},
            posture=Posture.Proactive,
            threshold=1,
            within=timedelta(seconds=seconds),
        ),
        actions=actions,
    ).create()
    return True


def _webhook(url: str) -> bool:
    return url.split("://", 1)[0].lower() in ("http", "https")


def check_url(url: str) -> None:
    """MnistError (one line) unless `url` is http(s) or a URL apprise can send to."""
    if _webhook(url):
        return
    import apprise

    if not apprise.Apprise().add(url):  # pyright: ignore[reportUnknownMemberType]  (apprise's hints)
        raise MnistError(f"MNIST_ALERT_URL: apprise cannot send to {url.split(':', 1)[0]}://")


def save_block(url: str) -> Any:
    """Save the notification block `mnist-alerts` for `url` (replacing one of the same kind);
    its document id. MnistError when apprise cannot reach such a URL."""
    from prefect.blocks.notifications import CustomWebhookNotificationBlock, SlackWebhook
    from pydantic import SecretStr

    check_url(url)
    if _webhook(url):
        text = "{{subject}}\n{{body}}"
        data = {"subject": "{{subject}}", "body": "{{body}}", "text": text}
        # headers and cookies given: pyright does not see Prefect's positional `Field(None)`
        block = CustomWebhookNotificationBlock(
            name=BLOCK, url=url, json_data=data, headers=None, cookies=None
        )
    else:
        block = SlackWebhook(url=SecretStr(url), notify_type="warning")
    return block.save(BLOCK, overwrite=True)  # pyright: ignore[reportUnknownMemberType]  (async_dispatch)


def _alerts(block_id: Any) -> list[AutomationCore]:
    """The three alert automations, sending through the block `block_id`."""
    from prefect.events.actions import SendNotification
    from prefect.events.schemas.automations import AutomationCore, EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    def reactive(expect: set[str], match: dict[str, str | list[str]], **more: Any) -> EventTrigger:
        spec = ResourceSpecification(match)
        return EventTrigger(
            expect=expect, match=spec, posture=Posture.Reactive, threshold=1, **more
        )

    def send(subject: str, body: str) -> list[Any]:
        return [SendNotification(block_document_id=block_id, subject=subject, body=body)]

    run = "{{ flow_run.name }} of {{ deployment.name }}"
    return [
        AutomationCore(
            name=FAILED,
            description="a flow run of a deployment named mnist-* failed or crashed",
            trigger=reactive(
                {"prefect.flow-run.Failed", "prefect.flow-run.Crashed"},
                {"prefect.resource.id": "prefect.flow-run.*"},
                match_related=ResourceSpecification(
                    {"prefect.resource.role": "deployment", "prefect.resource.name": DEPLOYMENTS}
                ),
            ),
            actions=send(
                f"mnist: {run} {{{{ flow_run.state.name }}}}",
                f"Flow run {run} ended {{{{ flow_run.state.name }}}} at "
                "{{ flow_run.state.timestamp }}: {{ flow_run.state.message }}\n"
                "Flow run id {{ flow_run.id }}"
                "{% if flow_run|ui_url %}: {{ flow_run|ui_url }}{% endif %}",
            ),
        ),
        AutomationCore(
            name=DRIFT,
            description="the monitor (mnist-monitor, mnist monitor) found drift in a window",
            trigger=reactive({f"{MONITOR}.drift"}, {"prefect.resource.id": f"{MONITOR}.*"}),
            actions=send(
                "mnist: drift in what {{ event.resource.id }} watches",
                "The monitor found drift in {{ event.payload.predictions }} predictions of "
                "v{{ event.payload.version }} from {{ event.payload.start }} to "
                "{{ event.payload.end }} (drifted: {{ event.payload.drifted }}; live accuracy "
                "{{ event.payload.live_accuracy }}; MLflow run {{ event.payload.run_id }}). "
                "Label the queue (mnist data queue) so that a retraining can learn it.\n"
                "{{ event.payload|tojson }}",
            ),
        ),
        AutomationCore(
            name=REJECTED,
            description="the gate rejected MNIST_ALERT_REJECTIONS challengers in a row",
            trigger=reactive(
                {GATE_DECIDED}, {"prefect.resource.id": "mnist.gate.*", GATE_ALERT: "true"}
            ),
            actions=send(
                "mnist: the gate rejected {{ event.payload.streak }} challengers in a row",
                "{{ event.payload.model }} v{{ event.payload.challenger }} was rejected: "
                "{{ event.payload.reason }}. The champion stays "
                "v{{ event.payload.champion }}.\n{{ event.payload|tojson }}",
            ),
        ),
    ]


def _same(a: AutomationCore, b: AutomationCore) -> bool:
    def plain(automation: AutomationCore) -> dict[str, Any]:
        dumped = automation.model_dump(mode="json", include={"description", "trigger", "actions"})
        dumped["trigger"].pop("id", None)
        return _canonical(dumped)

    return plain(a) == plain(b)


def _canonical(value: Any) -> Any:
    """`value` with its lists of strings sorted: a trigger's sets (`expect`, `for_each`, the
    names a resource may match) come back from the server in any order."""
    if isinstance(value, dict):
        return {k: _canonical(v) for k, v in value.items()}
    if isinstance(value, list):
        items = [_canonical(v) for v in value]
        return sorted(items) if all(isinstance(v, str) for v in items) else items
    return value


def ensure_alerts(url: str) -> dict[str, str]:
    """Save the block for `url` and create or update the alert automations on the configured
    Prefect server; what happened to each ("created", "updated", "already there")."""
    from prefect.client.orchestration import get_client

    wanted = _alerts(save_block(url))
    done: dict[str, str] = {}
    with get_client(sync_client=True) as client:
        for automation in wanted:
            found = client.read_automations_by_name(automation.name)
            if not found:
                client.create_automation(automation)
                done[automation.name] = "created"
            elif _same(found[0], automation):
                done[automation.name] = "already there"
            else:
                client.update_automation(found[0].id, automation)
                done[automation.name] = "updated"
    return done


def ensure_automations(alert_url: str | None) -> dict[str, str]:
    """The zombie automation and, given a URL, the alerts, on the configured Prefect server
    (idempotent); what happened to each, by name."""
    done = {ZOMBIES: "created" if ensure_zombie_detection() else "already there"}
    if alert_url:
        done.update(ensure_alerts(alert_url))
    return done
