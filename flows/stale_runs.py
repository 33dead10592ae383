"""Closing the runs that killed processes left open: their Prefect flow runs CRASHED, their
MLflow runs FAILED (`mnist doctor`, and `tracked_run`, which every flow's MLflow run starts
with)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING

from mnist import outages
from mnist.errors import first_line

if TYPE_CHECKING:
    from mnist.tracking import Run, StaleRun


def _states(client, ids: list[str]) -> dict:
    """The current state of each flow run among `ids` that this Prefect API knows."""
    from prefect.exceptions import ObjectNotFound

    found = {}
    for run_id in ids:
        try:
            found[run_id] = client.read_flow_run(run_id).state
        except (ObjectNotFound, ValueError):
            continue
    return found


def crash_flow_runs(ids: list[str]) -> list[str]:
    """Mark flow runs that are not over as CRASHED (their process died without saying so);
    returns those it marked. Runs this Prefect API does not know are left alone."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import PrefectHTTPStatusError
    from prefect.states import Crashed

    from mnist.errors import MnistError

    marked = []
    try:
        with get_client(sync_client=True) as client:
            for run_id, state in _states(client, ids).items():
                if state is None or not state.is_final():
                    message = "its process died without reporting (found by mnist)"
                    client.set_flow_run_state(run_id, Crashed(message=message), force=True)
                    marked.append(run_id)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        raise MnistError(f"Prefect API: cannot mark flow runs crashed ({exc})") from exc
    return marked


def ended_flow_runs(ids: list[str]) -> dict[str, str]:
    """The final states (COMPLETED, FAILED, CRASHED, CANCELLED) of those flow runs, among
    `ids`, that are over; runs this Prefect API does not know are left out."""
    from prefect.client.orchestration import get_client

    with get_client(sync_client=True) as client:
        states = _states(client, ids)
    return {i: s.type.value for i, s in states.items() if s is not None and s.is_final()}


def close_stale_runs(
    api_needed: Callable[[], None] = lambda: None,
) -> tuple[list[StaleRun], list[str]]:
    """Close the runs that dead processes left open: on this host, those whose process is
    gone, their Prefect flow runs CRASHED first; anywhere, those whose Prefect flow run is over
    (crashed by the server's zombie detection, say). `api_needed` is called before Prefect is
    asked. Returns the MLflow runs and the flow run ids it closed."""
    from mnist import tracking

    asked = []

    def api() -> None:
        if not asked:
            api_needed()
            asked.append(True)

    def ended(ids: list[str]) -> dict[str, str]:
        api()
        try:
            return ended_flow_runs(ids)
        except Exception:  # an unreachable Prefect API: those runs wait for the next look
            return {}

    stale = tracking.stale_runs(ended=ended)
    crashed = []
    if flow_runs := [run.flow_run_id for run in stale if run.here and run.flow_run_id]:
        api()
        crashed = crash_flow_runs(flow_runs)
    return tracking.fail_stale_runs(stale), crashed


def tidy() -> None:
    """`close_stale_runs`, said in the flow run's log; never fails the flow run."""
    from prefect import get_run_logger

    logger = get_run_logger()
    try:
        stale, crashed = close_stale_runs()
    except Exception as exc:  # tidying up after others must not stop this run
        logger.warning("could not close runs left open by killed processes: %s", first_line(exc))
    else:
        if stale:
            logger.warning(
                "closed %d run(s) left open by killed processes: %s (and %d Prefect flow run(s))",
                len(stale),
                ", ".join(s.run_id for s in stale),
                len(crashed),
            )


@contextmanager
def tracked_run(experiment: str, name: str) -> Iterator[Run]:
    """The flow run's MLflow run, FINISHED if the body succeeds, else FAILED. Runs that killed
    processes left RUNNING on this host are closed first (MLflow and Prefect)."""
    from prefect import get_run_logger
    from prefect.runtime import flow_run

    from mnist.tracking import Run

    logger = get_run_logger()
    tidy()
    run = Run.start(experiment, name, {"prefect.flow_run_id": str(flow_run.id or "")})
    logger.info("MLflow run %s in experiment %r", run.run_id, experiment)
    try:
        yield run
    except BaseException as exc:
        if outages.away(exc):  # ending it would wait as long again; the next run or
            logger.warning("MLflow run %s left open: a store is away", run.run_id)
            raise  # `mnist doctor` closes it, its process gone
        run.end(False)
        raise
    run.end(True)
