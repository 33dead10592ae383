"""A lock that dies with its holder: `fcntl.flock` on a file, which the kernel releases when the
holding process exits or is killed (`kill -9` included), so no crash can leave it held. The
file says who holds it, for the log lines of those who wait and for `mnist doctor`.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import socket
import time
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from mnist.errors import MnistError


@dataclass(frozen=True)
class Holder:
    """Who holds a lock: what for (e.g. a flow run), which process, since when."""

    what: str
    pid: int
    host: str
    since: str

    def __str__(self) -> str:
        return f"{self.what} (pid {self.pid} on {self.host}) since {self.since}"


def holder(path: Path) -> Holder | None:
    """Who holds the lock at `path` now, or None when nobody does."""
    try:
        with open(path) as f:
            try:
                fcntl.flock(f, fcntl.LOCK_SH | fcntl.LOCK_NB)
            except BlockingIOError:
                return Holder(**json.loads(f.read() or "{}"))
            fcntl.flock(f, fcntl.LOCK_UN)
            return None
    except (FileNotFoundError, json.JSONDecodeError, TypeError):
        return None


@contextlib.contextmanager
def hold(
    path: Path,
    what: str,
    timeout: float,
    on_wait: Callable[[Holder | None, float], None] = lambda holder, waited: None,
    report_every: float = 30.0,
) -> Iterator[None]:
    """Hold the lock at `path`, waiting at most `timeout` seconds for it; `on_wait` hears who
    holds it when the wait starts and every `report_every` seconds after."""
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "a+") as f:
        started = time.monotonic()
        report_at = started
        while True:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                waited = time.monotonic() - started
                if waited >= timeout:
                    raise MnistError(
                        f"{path.stem} is held by {holder(path) or 'another process'}; gave up "
                        f"after waiting {waited:.0f} s"
                    ) from None
                if time.monotonic() >= report_at:
                    on_wait(holder(path), waited)
                    report_at += report_every
                time.sleep(min(0.5, max(0.0, timeout - waited)))
        try:
            me = Holder(
                what,
                os.getpid(),
                socket.gethostname(),
                datetime.now(UTC).isoformat(timespec="seconds"),
            )
            f.seek(0)
            f.truncate()
            f.write(json.dumps(asdict(me)))
            f.flush()
            yield
        finally:
            f.truncate(0)
            fcntl.flock(f, fcntl.LOCK_UN)
