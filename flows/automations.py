"""The automations this project creates on a Prefect server."""

from __future__ import annotations

ZOMBIES = "mnist: crash flow runs that stopped beating"
HEARTBEAT_SECONDS = 30
"""How often a flow run of a deployment says it lives (PREFECT_FLOWS_HEARTBEAT_FREQUENCY, set
for workers); after three missed beats the automation `ZOMBIES` crashes it."""


def ensure_zombie_detection() -> bool:
    """Create, on the configured Prefect server, the automation that marks flow runs CRASHED
    when their heartbeats stop (a machine or worker died): Prefect's documented recipe for a
    self-hosted server. True if it was created now, False if it was there."""
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
    message = "no heartbeat for 90 s: its process died"
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
            within=timedelta(seconds=3 * HEARTBEAT_SECONDS),
        ),
        actions=actions,
    ).create()
    return True
