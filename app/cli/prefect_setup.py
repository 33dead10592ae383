"""Prefect for the commands that run flows: its console logging, without tracebacks for user
errors, and its temporary API started in the background while the command imports the flow."""

from __future__ import annotations

import logging
from collections.abc import Callable

from mnist.errors import MnistError


class _OneLineUserErrors(logging.Filter):
    """Keep tracebacks of expected user errors (MnistError) out of Prefect's console log."""

    def filter(self, record: logging.LogRecord) -> bool:
        if record.exc_info and isinstance(record.exc_info[1], MnistError):
            record.exc_info = None
            record.exc_text = None
        return True


def _prefect_logging() -> None:
    """Prefect's console logging, without tracebacks for user errors, which Prefect logs for a
    failed task and flow on several loggers."""
    from prefect.logging.configuration import setup_logging

    setup_logging()
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
