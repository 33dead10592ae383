"""The `mnist` command's exit without teardown (`app/cli/exit.py`, ADR 0031): CPython's private
`threading._shutdown` and `atexit._run_exitfuncs` still do what it relies on, so a CPython
upgrade that changes them fails here, not in a user's lost log line."""

import os
import subprocess
import sys
import textwrap

import pytest

from tests.conftest import ROOT

SCRIPT = """
import atexit, os, sys, threading, time
from app.cli.exit import exit_now

fd = os.open(sys.argv[1], os.O_WRONLY | os.O_CREAT | os.O_APPEND)

def note(what, write=os.write, fd=fd):
    write(fd, what.encode() + b"\\n")

class Teardown:
    def __del__(self, note=note):
        note("teardown")

kept = Teardown()  # a module global: collected by the interpreter's teardown, if it runs
threading._register_atexit(lambda: note("thread exit hook"))  # as Prefect's event worker
worker = threading.Thread(target=lambda: (time.sleep(0.3), note("thread finished")))
worker.start()  # not a daemon: waited for
atexit.register(lambda: note("exit handler"))  # as logging and Prefect's log worker
print("buffered output", end="")  # not flushed: a pipe is block-buffered
{exit}
"""


def _exit_with(tmp_path, exit: str) -> tuple[subprocess.CompletedProcess, list[str]]:
    notes = tmp_path / "notes"
    script = textwrap.dedent(SCRIPT).replace("{exit}", exit)
    proc = subprocess.run(
        [sys.executable, "-c", script, str(notes)],
        cwd=ROOT,
        env={k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"},  # buffered
        capture_output=True,
        text=True,
        timeout=60,
    )
    return proc, notes.read_text().splitlines() if notes.exists() else []


def test_the_private_functions_are_still_there():
    import atexit
    import threading

    assert callable(getattr(threading, "_shutdown", None)), "CPython removed threading._shutdown"
    assert callable(getattr(atexit, "_run_exitfuncs", None)), (
        "CPython removed atexit._run_exitfuncs"
    )


def test_exit_runs_every_exit_step_in_order_then_skips_the_teardown(tmp_path):
    proc, notes = _exit_with(tmp_path, "exit_now(3)")
    assert proc.returncode == 3, proc.stderr
    assert proc.stdout == "buffered output"
    assert notes == ["thread exit hook", "thread finished", "exit handler"]


def test_a_normal_exit_would_run_the_teardown(tmp_path):
    """The control: what `exit_now` skips is there to skip."""
    proc, notes = _exit_with(tmp_path, "sys.exit(3)")
    assert proc.returncode == 3, proc.stderr
    assert notes == ["thread exit hook", "thread finished", "exit handler", "teardown"]


@pytest.mark.parametrize(("code", "expected"), [(0, 141), (2, 2)])
def test_a_reader_gone_away_is_sigpipe_unless_the_command_failed(tmp_path, code, expected):
    # stdout a pipe without a reader; the buffered output's flush at exit finds it gone
    gone = "r, w = os.pipe(); os.dup2(w, 1); os.close(r)\n"
    proc, _ = _exit_with(tmp_path, f"{gone}exit_now({code})")
    assert proc.returncode == expected, proc.stderr
