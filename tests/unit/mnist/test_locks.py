"""The gate's lock on real processes: it dies with a killed holder, and a live holder makes a
waiter log who holds it and give up in bounded time with one clear line."""

import os
import signal
import subprocess
import sys

import pytest

from mnist import locks
from mnist.errors import MnistError

HOLD = """
import sys, time
from pathlib import Path
from mnist.locks import hold
with hold(Path(sys.argv[1]), "flow run crash-test", 10):
    print("held", flush=True)
    time.sleep(600)
"""


@pytest.fixture
def holder_process(tmp_path):
    path = tmp_path / "mnist-cnn-champion-gate.lock"
    proc = subprocess.Popen(
        [sys.executable, "-c", HOLD, str(path)], stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout.readline().strip() == "held"
    yield path, proc
    proc.kill()
    proc.wait()


def test_a_killed_holder_leaves_no_lock(holder_process):
    path, proc = holder_process
    assert locks.holder(path).pid == proc.pid
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert locks.holder(path) is None
    with locks.hold(path, "flow run next", timeout=0):
        assert locks.holder(path).what == "flow run next"


def test_a_live_holder_is_named_and_the_wait_is_bounded(holder_process):
    path, proc = holder_process
    heard = []
    with (
        pytest.raises(MnistError) as err,
        locks.hold(path, "flow run waiting", timeout=1.5, on_wait=lambda h, w: heard.append(h)),
    ):
        pass  # pragma: no cover (never acquired)
    message = str(err.value)
    assert message.startswith(
        f"mnist-cnn-champion-gate is held by flow run crash-test (pid {proc.pid} on "
    )
    assert "; gave up after waiting " in message and "\n" not in message
    assert heard and heard[0].pid == proc.pid and heard[0].what == "flow run crash-test"
