"""The `mnist` command's exit: CPython's own exit steps, then `os._exit`, skipping the
interpreter's teardown of TensorFlow (about 2 s, ADR 0031).

`threading._shutdown` and `atexit._run_exitfuncs` are private; `tests/unit/app/cli/test_cli_exit.py`
fails when a CPython upgrade changes them.
"""

from __future__ import annotations

import atexit
import os
import signal
import sys
import threading
from typing import NoReturn


def exit_now(code: int) -> NoReturn:
    """Exit with `code` once everything is written, in CPython's own order: threads' exit hooks
    (Prefect's event worker drains there) and the wait for non-daemon threads, then the exit
    handlers (logging, Prefect's log worker), then the standard streams; then no teardown."""
    threading._shutdown()  # pyright: ignore[reportAttributeAccessIssue]  (private, tested)
    atexit._run_exitfuncs()  # pyright: ignore[reportAttributeAccessIssue]  (private, tested)
    try:
        sys.stdout.flush()
        sys.stderr.flush()
    except BrokenPipeError:  # the reader went away (`| head`)
        code = code or 128 + signal.SIGPIPE
    except OSError:
        code = code or 1
    os._exit(code)
