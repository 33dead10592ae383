"""Prefect's temporary API server as a child that never outlives its parent.

    python -m flows.temporary_api_child PARENT_PID UVICORN_ARGS...

Runs uvicorn (as Prefect's temporary server does) with a watchdog thread: when the parent
dies, even by `kill -9`, the server shuts down within a second instead of lingering as an
orphan. It runs in its own session, so a Ctrl-C at the terminal reaches only the parent, which
can then still report the interrupted run to this server before stopping it.
"""

import os
import signal
import sys
import threading
import time


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
