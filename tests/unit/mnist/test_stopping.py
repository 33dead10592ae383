"""`mnist.stopping`: SIGINT and SIGTERM inside `deferred()` wait for the end of the block, then
reach the handler that was installed before it."""

import os
import signal

import pytest
from prefect.exceptions import TerminationSignal
from prefect.utilities.engine import _prefect_sigterm_handler

from mnist import stopping


class Stop(Exception):
    pass


@pytest.fixture
def handlers():
    saved = {s: signal.getsignal(s) for s in stopping.SIGNALS}
    yield
    for signum, handler in saved.items():
        signal.signal(signum, handler)


def _raise_stop(signum, frame):
    raise Stop(signal.Signals(signum).name)


@pytest.mark.parametrize("signum", stopping.SIGNALS)
def test_a_signal_inside_the_block_reaches_the_old_handler_after_it(handlers, signum):
    signal.signal(signum, _raise_stop)
    steps = []
    with pytest.raises(Stop, match=signal.Signals(signum).name), stopping.deferred():
        os.kill(os.getpid(), signum)
        steps.append("after the signal")
        assert stopping.pending()
        steps.append("end of the block")
    assert steps == ["after the signal", "end of the block"]
    assert not stopping.pending()
    assert signal.getsignal(signum) is _raise_stop


def test_prefects_termination_signal_is_raised_after_the_block(handlers):
    """Prefect's flow engine raises `TerminationSignal` from its SIGTERM handler; inside
    TensorFlow that became a `RuntimeError`. Deferred, it is raised where Python code runs."""
    signal.signal(signal.SIGTERM, _prefect_sigterm_handler)
    reached_the_end = False
    with pytest.raises(TerminationSignal), stopping.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        reached_the_end = stopping.pending()
    assert reached_the_end
    assert signal.getsignal(signal.SIGTERM) is _prefect_sigterm_handler


def test_a_block_without_signals_leaves_the_handlers_as_they_were(handlers):
    signal.signal(signal.SIGTERM, _raise_stop)
    with stopping.deferred():
        assert signal.getsignal(signal.SIGTERM) is not _raise_stop
        with stopping.deferred():  # nested: the outer block owns the signals
            assert not stopping.pending()
    assert signal.getsignal(signal.SIGTERM) is _raise_stop


def test_only_the_first_of_two_signals_is_delivered(handlers):
    calls = []
    signal.signal(signal.SIGINT, lambda signum, frame: calls.append(signum))
    signal.signal(signal.SIGTERM, lambda signum, frame: calls.append(signum))
    with stopping.deferred():
        os.kill(os.getpid(), signal.SIGTERM)
        os.kill(os.getpid(), signal.SIGINT)
    assert calls == [signal.SIGTERM]


def test_an_ignored_signal_stays_ignored_and_stops_nothing(handlers):
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # a background job of a shell
    with stopping.deferred():
        assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
        os.kill(os.getpid(), signal.SIGINT)
        assert not stopping.pending()
    assert signal.getsignal(signal.SIGINT) == signal.SIG_IGN
