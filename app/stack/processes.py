"""The stack's processes as the kernel lists them: every process of a stack (found by the
`MNIST_STACK_DIR` each inherits), and what a killed piece left running (uvicorn's workers on
its port, PostgreSQL's backends on its shared memory) that must end before it starts again."""

from __future__ import annotations

import contextlib
import os
import signal
from collections.abc import Callable
from pathlib import Path

from app.stack.config import Stack
from mnist.waiting import wait_until

PIECE = "SUPERVISOR_PROCESS_NAME"
"""The variable that supervisord sets to the piece's name, which every process that the piece
starts inherits."""


def _environ(pid: str) -> list[bytes]:
    return Path("/proc", pid, "environ").read_bytes().split(b"\0")


def _lineage() -> set[int]:
    """This process and its ancestors: a `make stack-up` or `timeout` started with
    `MNIST_STACK_DIR=...` carries the variable too, and is not part of the stack."""
    pids, pid = set(), os.getpid()
    while pid > 1:
        pids.add(pid)
        try:
            stat = Path("/proc", str(pid), "stat").read_text()
        except OSError:
            break
        pid = int(stat.rsplit(")", 1)[1].split()[1])  # the field after the state: the parent
    return pids


def _find(match: Callable[[str], bool]) -> list[int]:
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if match(proc.name):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    mine = _lineage()
    return [pid for pid in found if pid not in mine]


def members(stack: Stack) -> list[int]:
    """Every process of the stack in `stack.dir` (supervisord and what it runs), found by the
    variable each one inherits, so also what a killed supervisord left behind."""
    mark = f"MNIST_STACK_DIR={stack.dir}".encode()
    return _find(lambda pid: mark in _environ(pid))


def leftovers(stack: Stack, piece: str) -> list[int]:
    """What an earlier run of the server `piece` left running: its processes outside the
    caller's process group (supervisord starts each run of a piece in a group of its own)."""
    marks = {f"MNIST_STACK_DIR={stack.dir}".encode(), f"{PIECE}={piece}".encode()}
    group = os.getpgrp()
    return _find(lambda pid: marks <= set(_environ(pid)) and os.getpgid(int(pid)) != group)


def postgres_leftovers(stack: Stack) -> list[int]:
    """The processes of a PostgreSQL whose postmaster was killed: every process working in the
    stack's data directory (PostgreSQL rewrites its processes' environment, not their cwd)."""
    data = stack.pg_data.resolve()
    return _find(lambda pid: Path("/proc", pid, "cwd").resolve() == data)


def end(find: Callable[[], list[int]], grace: float = 5) -> list[int]:
    """SIGTERM to what `find` lists, SIGKILL to what still runs after `grace` s; the pids
    it found first."""
    first = find()
    if not first:
        return first
    for sig in (signal.SIGTERM, signal.SIGKILL):
        for pid in find():
            with contextlib.suppress(OSError):
                os.kill(pid, sig)
        with contextlib.suppress(TimeoutError):
            wait_until(lambda: not find(), grace, 0.2)
    return first
