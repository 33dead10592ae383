"""Prefect's temporary API, started early and dying with its parent; closing the flow runs
that killed processes left open.

With no PREFECT_API_URL, Prefect starts a temporary API server in a subprocess when the first
flow runs: 7-10 s on a 2-core machine, during which nothing else happens. A command that is
about to run a flow calls `start_early()` before its heavy imports; the flow then finds the
server running (Prefect keeps one per process) instead of starting it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from mnist.tracking import StaleRun


def temporary_api():
    """Prefect's temporary API server, started as a child that dies with this process (even
    by `kill -9`) and that a Ctrl-C at the terminal does not stop before this process is done
    with it (`flows/api_server.py`). Prefect keeps one per process: flows use this one."""
    import os
    import subprocess
    import sys

    import prefect
    from prefect.server.api.server import SubprocessASGIServer
    from prefect.settings import get_current_settings

    class TemporaryAPI(SubprocessASGIServer):
        def _run_uvicorn_command(self) -> subprocess.Popen:
            # Prefect's own command (prefect/server/api/server.py), through the watchdog.
            args = ["--app-dir", str(prefect.__module_path__.parent), "--factory",
                    "prefect.server.api.server:create_app", "--host", "127.0.0.1", "--port",
                    str(self.port), "--log-level", "error", "--lifespan", "on"]  # fmt: skip
            settings = get_current_settings().to_environment_variables(exclude_unset=True)
            env = {**os.environ, "PREFECT_UI_ENABLED": "0", "PREFECT__SERVER_EPHEMERAL": "1",
                   "PREFECT__SERVER_FINAL": "1", **settings}  # fmt: skip
            # -P: the working directory (maybe another project's `flows/`) stays off sys.path
            command = [sys.executable, "-P", "-m", "flows.api_server", str(os.getpid()), *args]
            return subprocess.Popen(command, env=env, start_new_session=True)

    return TemporaryAPI()


def start_early() -> Callable[[], None]:
    """Start the temporary API in a background thread if flows will need one; returns a
    function that waits for the start. A failed start is left to the flow, which retries it
    and reports Prefect's own error."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return lambda: None

    # Made here, not in the thread: importing Prefect's server there would contend for the
    # GIL with the caller's imports, while the thread itself mostly waits for the subprocess.
    server = temporary_api()

    def start() -> None:
        with contextlib.suppress(Exception):  # the flow's own start retries and reports it
            server.start()

    thread = threading.Thread(target=start, name="prefect-api-start", daemon=True)
    thread.start()
    return thread.join


def crash_flow_runs(ids: list[str]) -> list[str]:
    """Mark flow runs that are not over as CRASHED (their process died without saying so);
    returns those it marked. Runs this Prefect API does not know are left alone."""
    import httpx
    from prefect.client.orchestration import get_client
    from prefect.exceptions import ObjectNotFound, PrefectHTTPStatusError
    from prefect.states import Crashed

    from mnist.errors import MnistError

    marked = []
    try:
        with get_client(sync_client=True) as client:
            for run_id in ids:
                try:
                    state = client.read_flow_run(run_id).state
                except (ObjectNotFound, ValueError):
                    continue
                if state is None or not state.is_final():
                    message = "its process died without reporting (found by mnist)"
                    client.set_flow_run_state(run_id, Crashed(message=message), force=True)
                    marked.append(run_id)
    except (httpx.HTTPError, PrefectHTTPStatusError) as exc:
        raise MnistError(f"Prefect API: cannot mark flow runs crashed ({exc})") from exc
    return marked


def close_stale_runs(
    api_needed: Callable[[], None] = lambda: None,
) -> tuple[list[StaleRun], list[str]]:
    """Close the runs that killed processes on this host left open: their Prefect flow runs
    CRASHED first (`api_needed` is called before Prefect is asked), then the MLflow runs
    FAILED. Returns the MLflow runs and the flow run ids it closed."""
    from mnist import tracking

    stale = tracking.stale_runs()
    crashed = []
    if flow_runs := [run.flow_run_id for run in stale if run.flow_run_id]:
        api_needed()
        crashed = crash_flow_runs(flow_runs)
    return tracking.fail_stale_runs(stale), crashed
