"""Start Prefect's temporary API early, so that it boots while TensorFlow loads.

With no PREFECT_API_URL, Prefect starts a temporary API server in a subprocess when the first
flow runs: 7-10 s on a 2-core machine, during which nothing else happens. A command that is
about to run a flow calls `start_early()` before its heavy imports; the flow then finds the
server running (Prefect keeps one per process) instead of starting it.
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Callable


def start_early() -> Callable[[], None]:
    """Start the temporary API in a background thread if flows will need one; returns a
    function that waits for the start. A failed start is left to the flow, which retries it
    and reports Prefect's own error."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return lambda: None

    # Imported here, not in the thread: importing it there would contend for the GIL with the
    # caller's imports, while the thread itself mostly waits for the subprocess.
    from prefect.server.api.server import SubprocessASGIServer

    def start() -> None:
        with contextlib.suppress(Exception):  # the flow's own start retries and reports it
            SubprocessASGIServer().start()

    thread = threading.Thread(target=start, name="prefect-api-start", daemon=True)
    thread.start()
    return thread.join
