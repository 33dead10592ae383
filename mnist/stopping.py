"""Interrupts at safe points. A signal handled inside Keras' `fit` (in a training step, or
even from a callback) can leave Keras broken and surface as another error (an `IndexError`, a
`TypeError` from a tensor conversion) instead of the interrupt. Prefect makes it likelier: during
a flow run its SIGTERM handler raises `TerminationSignal` wherever the process is, and inside
TensorFlow's C++ bindings that turns into a `RuntimeError` and a failed task.

While `deferred()` is active in the main thread, SIGINT and SIGTERM are only recorded: training
sees `pending()` and stops at the end of the current batch, and once the block ends the signal
goes to the handler that was there before (the command line's, or Prefect's), at a safe point."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from types import FrameType

SIGNALS = (signal.SIGINT, signal.SIGTERM)
Handler = Callable[[int, FrameType | None], object] | int | signal.Handlers | None

_received: int | None = None
_depth = 0


def _record(signum: int, frame: FrameType | None) -> None:
    global _received
    if _received is None:
        _received = signum


@contextmanager
def deferred() -> Iterator[None]:
    """SIGINT and SIGTERM that arrive inside this block reach their handlers when it ends."""
    global _depth, _received
    owner = _depth == 0 and threading.current_thread() is threading.main_thread()
    current = {int(s): signal.getsignal(s) for s in SIGNALS} if owner else {}
    # an ignored signal stays ignored (a background job's SIGINT): it stops nothing
    previous: dict[int, Handler] = {s: h for s, h in current.items() if h != signal.SIG_IGN}
    for signum in previous:
        signal.signal(signum, _record)
    _depth += 1
    try:
        yield
    finally:
        _depth -= 1
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        if owner and _received is not None:
            signum, _received = _received, None
            _deliver(signum, previous[signum])


def pending() -> bool:
    """Whether a signal waits for the end of the deferred block."""
    return _received is not None


def _deliver(signum: int, handler: Handler) -> None:
    if callable(handler):
        handler(signum, None)
    elif handler == signal.SIG_DFL:
        signal.raise_signal(signum)
