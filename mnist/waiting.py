"""Waiting for a server: the one polling loop that every caller waiting for something to answer
uses (the stack's pieces, the temporary Prefect API, the servers the tests start).

    wait_until(answers(url), timeout=60, gone=exited(process))

asks `gone` first, then `check`, every `interval` seconds: it returns the first true answer of
`check`, raises `Gone` with the reason `gone` gave (the server's process died: no use waiting
on), or `TimeoutError` once `timeout` seconds have passed. Callers turn both into their own
one-line messages.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TypeVar

if TYPE_CHECKING:
    import subprocess

T = TypeVar("T")


class Gone(RuntimeError):
    """What was awaited will not come (its process is gone): one line saying why."""


def never() -> str | None:
    """The `gone` of a wait that only a timeout ends."""
    return None


def wait_until(
    check: Callable[[], T],
    timeout: float,
    interval: float = 0.5,
    gone: Callable[[], str | None] = never,
) -> T:
    """Call `check` until it returns something true, and return that; `gone` is asked before
    each try and a reason it returns ends the wait (`Gone`); `TimeoutError` after `timeout` s."""
    deadline = time.monotonic() + timeout
    while True:
        if why := gone():
            raise Gone(why)
        if result := check():
            return result
        left = deadline - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"not ready within {timeout:g} s")
        time.sleep(min(interval, left))


def answers(
    url: str, auth: tuple[str, str] | None = None, timeout: float = 2
) -> Callable[[], bool]:
    """A `check`: a GET of `url` answers 200 (refused, timed out or any other status: not yet)."""

    def check() -> bool:
        import httpx  # here: importing this module costs nothing

        try:
            return httpx.get(url, timeout=timeout, auth=auth).status_code == 200
        except httpx.HTTPError:
            return False

    return check


def exited(process: subprocess.Popen) -> Callable[[], str | None]:
    """A `gone`: "exited with code N" once `process` has ended."""
    return lambda: None if process.poll() is None else f"exited with code {process.returncode}"
