"""Start and stop real servers on 127.0.0.1 for tests and benchmarks."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from pathlib import Path

import httpx


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc, timeout: float = 180) -> None:
    """Poll `url` until it answers 200, failing early if `proc` dies."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"server exited with {proc.returncode} before {url} answered")
        try:
            if httpx.get(url, timeout=2).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        time.sleep(0.5)
    raise TimeoutError(f"{url} did not answer within {timeout} s")


def start_server(args: list[str], health: str, log: Path, env: dict[str, str]):
    """Start `args` in its own session, logging to `log`; return once `health` answers.

    This Python's scripts come first on PATH, as in an activated venv: `mlflow models serve`
    runs `uvicorn` by name."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    with log.open("w") as out:
        proc = subprocess.Popen(args, stdout=out, stderr=subprocess.STDOUT,
                                env={**os.environ, "PATH": path, **env},
                                start_new_session=True)  # fmt: skip
    try:
        wait_for(health, proc)
    except Exception:
        proc.terminate()
        raise RuntimeError(f"{args[0]} failed to start: {log.read_text()[-2000:]}") from None
    return proc


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()
