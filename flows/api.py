"""Prefect's temporary API, started early and dying with its parent; closing the flow runs
that killed processes left open.

With no PREFECT_API_URL, Prefect starts a temporary API server in a subprocess when the first
flow runs (`SubprocessASGIServer`): 5-10 s on a 2-core machine during which nothing else
happens, after importing Prefect's whole server (2-3 s) into the flow's own process. Here a
command that is about to run a flow calls `start_early()` first: Prefect's own server command
starts in a child at once, without that import, while the caller imports TensorFlow; the flows
then use it as a configured API.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from importlib.util import find_spec
from pathlib import Path
from typing import TYPE_CHECKING

from mnist.env import TEMPORARY_PREFECT_API
from mnist.errors import MnistError

if TYPE_CHECKING:
    from mnist.tracking import StaleRun

_settings = contextlib.ExitStack()  # the process's Prefect settings, pointing at the server


class TemporaryAPI:
    """Prefect's temporary API server (its own uvicorn command, as `SubprocessASGIServer` runs
    it: no UI, no background services) as a child that dies with this process, even by
    `kill -9`, and that a Ctrl-C at the terminal does not stop before this process is done
    with it (`flows/api_server.py`)."""

    _current: TemporaryAPI | None = None

    def __init__(self) -> None:
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        prefect_dir = Path(find_spec("prefect").origin).parent  # no import of Prefect here
        args = [
            "--app-dir",
            str(prefect_dir.parent),
            "--factory",
            "prefect.server.api.server:create_app",
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        from prefect.settings import get_current_settings  # light: no server code

        settings = get_current_settings().to_environment_variables(exclude_unset=True)
        env = {
            **os.environ,
            "PREFECT_UI_ENABLED": "0",
            "PREFECT__SERVER_EPHEMERAL": "1",
            "PREFECT__SERVER_FINAL": "1",
            **settings,
        }
        # -P: the working directory (maybe another project's `flows/`) stays off sys.path
        command = [sys.executable, "-P", "-m", "flows.api_server", str(os.getpid()), *args]
        return subprocess.Popen(command, env=env, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait(self, timeout: float) -> None:
        """Until the server answers; a child that lost its port to another process is started
        again on another one. One that never answers is stopped."""
        import httpx

        deadline, tries = time.monotonic() + timeout, 1
        while time.monotonic() < deadline:
            if (code := self.process.poll()) is not None:
                if tries == 3:
                    raise MnistError(f"Prefect's temporary API exited with code {code} at start")
                self.process, tries = self._spawn(), tries + 1
            with contextlib.suppress(httpx.HTTPError):
                if httpx.get(f"{self.url}/health", timeout=2).status_code == 200:
                    return
            time.sleep(0.05)
        self.stop()
        raise MnistError(f"Prefect's temporary API did not answer within {timeout:.0f} s")

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.process.kill()
        self.process.wait()


def start_early() -> Callable[[], None]:
    """Start the temporary API if flows will need one; returns the function that waits for it
    and points this process's Prefect settings at it. One server per process."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return lambda: None
    server = TemporaryAPI._current = TemporaryAPI._current or TemporaryAPI()

    def started() -> None:
        from prefect.settings import (
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            PREFECT_UI_URL,
            temporary_settings,
        )

        if PREFECT_API_URL.value() == server.url:
            return
        try:
            server.wait(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        except MnistError:
            TemporaryAPI._current = None  # the next command starts another
            raise
        os.environ[TEMPORARY_PREFECT_API] = server.url
        # no UI to link to: it is off, and the server ends with this process
        updates = {PREFECT_API_URL: server.url, PREFECT_UI_URL: ""}
        _settings.enter_context(temporary_settings(updates=updates))

    return started


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
    from prefect.events.actions import ChangeFlowRunState
    from prefect.events.schemas.automations import EventTrigger, Posture
    from prefect.events.schemas.events import ResourceSpecification

    try:
        Automation.read(name=ZOMBIES)
        return False
    except ValueError:
        pass
    over = ("Completed", "Failed", "Cancelled", "Crashed")
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
        actions=[
            ChangeFlowRunState(
                state=StateType.CRASHED, message="no heartbeat for 90 s: its process died"
            )
        ],
    ).create()
    return True
