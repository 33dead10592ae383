"""Interrupts at safe points. An interrupt raised inside Keras' `fit` (in a training step, or
even from a callback) can leave Keras broken and surface as another error (an `IndexError`, a
`TypeError` from a tensor conversion) instead of the interrupt. While `deferred()` is active,
`request` only records the interrupt; training sees it as `pending()`, stops at the end of the
current batch, and the interrupt is raised once the block ends (`check`)."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

_requested: type[BaseException] | None = None
_deferring = 0


def request(interrupt: type[BaseException]) -> None:
    """Raise `interrupt` now, or at the next safe point while deferring (from a handler)."""
    global _requested
    if _deferring:
        _requested = interrupt
        return
    raise interrupt


@contextmanager
def deferred() -> Iterator[None]:
    """Interrupts requested inside this block wait for `check`."""
    global _deferring
    _deferring += 1
    try:
        yield
    finally:
        _deferring -= 1
        check()


def pending() -> bool:
    """Whether an interrupt waits for the end of the deferred block."""
    return _requested is not None


def check() -> None:
    """Raise an interrupt that was requested while deferring."""
    global _requested
    if _requested is not None:
        interrupt, _requested = _requested, None
        raise interrupt
