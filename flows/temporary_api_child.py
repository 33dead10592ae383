"""Prefect's temporary API server as a child that never outlives its parent.

    python -m flows.temporary_api_child PARENT_PID UVICORN_ARGS...

Runs uvicorn (as Prefect's temporary server does) with a watchdog thread: when the parent
dies, even by `kill -9`, the server shuts down within a second instead of lingering as an
orphan. It runs in its own session, so a Ctrl-C at the terminal reaches only the parent, which
can then still report the interrupted run to this server before stopping it. The app is
Prefect's, built by `create_app` below as Prefect builds its own ephemeral server's (ADR 0032).
"""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from fastapi import FastAPI


def create_app() -> FastAPI:
    """Prefect's API as an ephemeral server: no UI, and only the background services marked
    to run in one (not the scheduler, the late-runs marker or the foreman, say). Uvicorn's
    `--factory` calls it; Prefect's own temporary server asks for the same through the private
    variables `PREFECT__SERVER_EPHEMERAL` and `PREFECT__SERVER_FINAL`, this through the
    parameter of `create_app` (`tests/integration/test_temporary_api_start.py` checks it)."""
    from prefect.server.api.server import create_app as prefect_app

    return prefect_app(ephemeral=True)


def _watch(parent: int) -> None:
    while os.getppid() == parent:  # a dead parent's children are re-parented
        time.sleep(0.5)
    os.kill(os.getpid(), signal.SIGTERM)  # uvicorn's graceful shutdown
    time.sleep(10)
    os._exit(1)


def main() -> None:
    parent, args = int(sys.argv[1]), sys.argv[2:]
    threading.Thread(target=_watch, args=(parent,), name="parent-watch", daemon=True).start()
    import uvicorn

    sys.argv = ["uvicorn", *args]
    uvicorn.main()


if __name__ == "__main__":
    main()
