"""The stack under supervisord (`stack/supervisord.conf`): starting it, and asking it over its
unix socket (mode 0700, in the stack's directory) how each piece is. supervisord counts no
restarts: they are counted here from its log, where it writes each spawn and each exit with
its cause."""

from __future__ import annotations

import re
import subprocess
import xmlrpc.client
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

from app.stack.config import BIN, ROOT, Stack, StackError

CONF = ROOT / "stack" / "supervisord.conf"
_SPAWNED = re.compile(r" spawned: '([^']+)' with pid ")
_EXITED = re.compile(r" exited: (\S+) \((.*)\)$")


def socket(stack: Stack) -> Path:
    return stack.dir / "supervisor.sock"


def pidfile(stack: Stack) -> Path:
    return stack.dir / "supervisord.pid"


def log(stack: Stack) -> Path:
    """supervisord's own log: its start, each piece's spawns and exits (with their cause)."""
    return stack.dir / "logs" / "stack.log"


def running(stack: Stack) -> int | None:
    """The pid of the stack's supervisord, if it runs (a pid that the kernel gave another
    process since is not it)."""
    mark = f"MNIST_STACK_DIR={stack.dir}".encode()
    try:
        pid = int(pidfile(stack).read_text())
        if mark not in Path("/proc", str(pid), "environ").read_bytes().split(b"\0"):
            return None
    except (OSError, ValueError):
        return None
    return pid


def start(stack: Stack, env: dict[str, str]) -> subprocess.Popen:
    """supervisord in a session of its own (it outlives this process); its errors before it
    logs anything go to the end of its log."""
    with log(stack).open("a") as out:
        return subprocess.Popen(
            [str(BIN / "supervisord"), "--configuration", str(CONF)],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=out,
            cwd=ROOT,
            env=env,
            start_new_session=True,
        )


def rpc(stack: Stack) -> Any:
    """supervisord's XML-RPC interface (`supervisor.*` methods) on the stack's socket."""
    from supervisor.xmlrpc import SupervisorTransport

    transport = SupervisorTransport(None, None, f"unix://{socket(stack)}")
    return xmlrpc.client.ServerProxy("http://127.0.0.1", transport=transport)


@dataclass(frozen=True)
class Piece:
    """One process of the stack as supervisord sees it."""

    name: str
    state: str  # RUNNING, STARTING, BACKOFF, FATAL, STOPPED, EXITED...
    pid: int
    uptime: float | None  # seconds since it (re)started, when it runs
    restarts: int  # starts since supervisord started, less the first
    last_exit: str  # supervisord's cause: "terminated by SIGKILL", "exit status 1"...


def history(stack: Stack, pid: int) -> tuple[dict[str, int], dict[str, str]]:
    """From supervisord's log since the supervisord `pid` started: how often each piece was
    spawned, and the cause of each one's last exit."""
    backups = [p for p in log(stack).parent.glob("stack.log.*") if p.suffix[1:].isdigit()]
    lines: list[str] = []
    for path in [*sorted(backups, key=lambda p: -int(p.suffix[1:])), log(stack)]:
        lines += path.read_text(errors="replace").splitlines()  # the oldest first
    started = f" supervisord started with pid {pid}"
    starts = [i for i, line in enumerate(lines) if line.endswith(started)]
    spawns: dict[str, int] = {}
    exits: dict[str, str] = {}
    for line in lines[starts[-1] if starts else len(lines) :]:
        if spawned := _SPAWNED.search(line):
            spawns[spawned[1]] = spawns.get(spawned[1], 0) + 1
        elif exited := _EXITED.search(line):
            exits[exited[1]] = exited[2]
    return spawns, exits


def pieces(stack: Stack) -> list[Piece]:
    """Every piece, in supervisord's order; a StackError when no supervisord answers."""
    if (pid := running(stack)) is None:
        raise StackError(f"no stack running in {stack.dir}")
    try:
        infos = rpc(stack).supervisor.getAllProcessInfo()
    except (OSError, xmlrpc.client.Error) as exc:
        raise StackError(f"supervisord does not answer on {socket(stack)}: {exc}") from None
    spawns, exits = history(stack, pid)
    return [
        Piece(
            name=info["name"],
            state=info["statename"],
            pid=info["pid"],
            uptime=info["now"] - info["start"] if info["statename"] == "RUNNING" else None,
            restarts=max(spawns.get(info["name"], 0) - 1, 0),
            last_exit=exits.get(info["name"], ""),
        )
        for info in infos
    ]


def table(found: list[Piece]) -> str:
    """`python -m app.stack status`: one line a piece."""
    rows = [("piece", "state", "pid", "uptime", "restarts", "last exit")]
    for piece in found:
        uptime = str(timedelta(seconds=int(piece.uptime))) if piece.uptime is not None else "-"
        pid = str(piece.pid) if piece.pid else "-"
        rows.append((piece.name, piece.state, pid, uptime, str(piece.restarts), piece.last_exit))
    widths = [max(len(row[i]) for row in rows) for i in range(5)]
    lines = []
    for row in rows:
        cells = [cell.ljust(width) for cell, width in zip(row[:5], widths, strict=True)]
        lines.append("  ".join([*cells, row[5]]).rstrip() + "\n")
    return "".join(lines)
