"""Interrupts at safe points. A signal handler that raises inside a TensorFlow training step
can leave Keras in a broken state (an `IndexError` from deep inside `fit` instead of the
interrupt); while `deferred()` is active, `request` only records the interrupt, and training
raises it at the next batch boundary (`check`, a few tenths of a second later)."""

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


def check() -> None:
    """Raise an interrupt that was requested while deferring."""
    global _requested
    if _requested is not None:
        interrupt, _requested = _requested, None
        raise interrupt
