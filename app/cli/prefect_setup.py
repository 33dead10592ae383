"""Prefect for the commands that run flows: its console logging, without tracebacks for user
errors, and its temporary API started in the background while the command imports the flow."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mnist import outages
from mnist.errors import MnistError


class _OneLineUserErrors(logging.Filter):
    """Keep tracebacks of expected errors out of Prefect's console log: user errors
    (MnistError) and a store away for longer than a run waits (`mnist.outages`)."""

    def filter(self, record: logging.LogRecord) -> bool:
        exc = record.exc_info[1] if record.exc_info else None
        if exc is not None and (isinstance(exc, MnistError) or outages.describe(exc)):
            record.exc_info = None
            record.exc_text = None
        return True


def _prefect_logging() -> None:
    """Prefect's console logging, without tracebacks for user errors, which Prefect logs for a
    failed task and flow on several loggers."""
    from prefect.logging.configuration import setup_logging

    setup_logging()
    # Logging's own errors stay off the console, as the logging docs advise in production:
    # Prefect's log shipping writes "--- Error logging to API ---" and the error, without a
    # newline, for each batch the API did not take once its retries ran out; the command's
    # one line names the API that was away (`mnist.outages`).
    logging.raiseExceptions = False
    quiet = _OneLineUserErrors()
    names = [n for n in logging.root.manager.loggerDict if n.split(".")[0] == "prefect"]
    for logger in map(logging.getLogger, ["prefect", *names]):
        for handler in logger.handlers:
            handler.addFilter(quiet)


def start_prefect() -> Callable[[], None]:
    """Prefect's console logging, and its temporary API starting in the background while the
    caller imports the flow (TensorFlow: about 8 s); returns the function that waits for it."""
    _prefect_logging()
    from flows.temporary_api import start_early

    return start_early()
