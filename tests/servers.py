"""Start and stop real servers (on 127.0.0.1 unless a test says otherwise) for tests and
benchmarks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from app.stack.postgres import PostgreSQL
from mnist.waiting import Gone, answers, exited, wait_until

BIN = Path(sys.executable).parent


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_for(url: str, proc, timeout: float = 180) -> None:
    """Poll `url` until it answers 200, failing early if `proc` dies."""
    try:
        wait_until(answers(url), timeout, 0.5, exited(proc))
    except Gone:
        raise RuntimeError(f"server exited with {proc.returncode} before {url} answered") from None
    except TimeoutError:
        raise TimeoutError(f"{url} did not answer within {timeout} s") from None


Server = tuple[list[str], str, Path, dict[str, str]]
"""How to start a server: its command, its health URL, its log file and its environment."""


def start_server(args: list[str], health: str, log: Path, env: dict[str, str]):
    """Start `args` in its own session, logging to `log`; return once `health` answers.

    This Python's scripts come first on PATH, as in an activated venv: `mlflow models serve`
    runs `uvicorn` by name."""
    return start_servers((args, health, log, env))[0]


def start_servers(*servers: Server) -> list[subprocess.Popen]:
    """Start every server at once (as `start_server` does one), then wait until each
    answers: their start-ups overlap. If one fails, all are stopped."""
    path = os.pathsep.join([str(Path(sys.executable).parent), os.environ.get("PATH", "")])
    procs = []
    for args, _, log, env in servers:
        with log.open("w") as out:
            procs.append(
                subprocess.Popen(
                    args,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env={**os.environ, "PATH": path, **env},
                    start_new_session=True,
                )
            )
    for proc, (args, health, log, _) in zip(procs, servers, strict=True):
        try:
            wait_for(health, proc)
        except Exception:
            for started in procs:
                started.terminate()
            raise RuntimeError(f"{args[0]} failed to start: {log.read_text()[-2000:]}") from None
    return procs


def mlflow_spec(root: Path, host: str = "127.0.0.1") -> Server:
    """`mlflow server` on a free port of `host`, SQLite backend, one worker, in `root`."""
    port = free_port()
    args = [str(BIN / "mlflow"), "server", "--host", host, "--port", str(port)]
    args += ["--workers", "1", "--backend-store-uri", f"sqlite:///{root / 'mlflow.db'}"]
    args += ["--artifacts-destination", str(root / "artifacts")]
    health, env = f"http://{host}:{port}/health", {"MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    return args, health, root / "server.log", env


def prefect_spec(root: Path, host: str = "127.0.0.1") -> Server:
    """`prefect server start` on a free port of `host` with its own home and database."""
    port = free_port()
    args = [str(BIN / "prefect"), "server", "start", "--host", host, "--port", str(port)]
    env = {
        "PREFECT_HOME": str(root),
        "PREFECT_UI_ENABLED": "false",
        "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
    }
    return args, f"http://{host}:{port}/api/health", root / "server.log", env


def server_url(spec: Server) -> str:
    """The server's base URL: its health URL less `/health` (MLflow), `/api/health` (Prefect)."""
    return spec[1].removesuffix("/api/health").removesuffix("/health")


def stop_server(proc) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=30)
    except subprocess.TimeoutExpired:
        proc.kill()


class Postgres(PostgreSQL):
    """A throwaway PostgreSQL server (the stack's launcher, `app.stack.postgres`) on a free
    loopback port, trusting its user, durability off, in a scratch directory; a child of this
    process that dies with it. `url(db)` creates database `db` and gives its SQLAlchemy URL.

    With `also_on` (an address of this machine, and the /24 it is on), it listens there too
    and trusts that network's clients."""

    def __init__(self, also_on: str | None = None) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="mnist-pg-"))
        if os.geteuid() == 0:  # the server runs as `postgres`, who must enter the directory
            shutil.chown(self.root, "postgres", "postgres")
        settings = {"fsync": "off", "full_page_writes": "off"}
        if also_on:
            settings["listen_addresses"] = f"127.0.0.1,{also_on}"
        super().__init__(self.root / "data", free_port(), settings=settings, log=self.root / "log")
        self.init()
        if also_on:
            with (self.data / "pg_hba.conf").open("a") as hba:
                hba.write(f"host all all {also_on}/24 trust\n")
        self.start()

    def start(self) -> subprocess.Popen:
        process = super().start()
        self.wait()
        return process

    def url(self, database: str, driver: str | None = None) -> str:
        self.create(database)
        return super().url(database, driver)

    def close(self) -> None:
        try:
            self.stop("immediate")
        finally:
            shutil.rmtree(self.root, ignore_errors=True)


class Webhook:
    """An HTTP receiver on 127.0.0.1 (alerts: `MNIST_ALERT_URL=webhook.url + "/hook"`) that
    keeps every JSON body posted to it, with when it came (and, in `headers`, the headers of
    each post); `close()` stops it."""

    def __init__(self) -> None:
        import json
        import threading
        import time
        from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

        self.posts: list[tuple[float, str, Any]] = []
        self.headers: list[dict[str, str]] = []
        posts, headers = self.posts, self.headers

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                headers.append(dict(self.headers))
                posts.append((time.monotonic(), self.path, json.loads(body)))
                self.send_response(200)
                self.end_headers()

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        threading.Thread(target=self.server.serve_forever, args=(0.05,), daemon=True).start()

    def wait(self, what: Callable[[Any], bool], timeout: float = 30) -> tuple[float, Any]:
        """The first body that satisfies `what`: when it came (time.monotonic), and the body."""
        import time

        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            for at, _, body in list(self.posts):
                if what(body):
                    return at, body
            time.sleep(0.02)
        raise AssertionError(f"no such post within {timeout} s: {self.posts}")

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ahead(pid: int, nice: int = -10) -> bool:
    """Put the session of process `pid` ahead of the others' for the CPU. Linux shares the CPU
    between sessions (autogroups) before the processes in them, so a test's timed command or
    the stack, in a session of its own, would get no more of it than any lone server that
    another test process started in its own (ADR 0100). Needs root; False without it or
    without autogroups."""
    try:
        Path(f"/proc/{pid}/autogroup").write_text(str(nice))
    except OSError:
        return False
    return True


def tree(pid: int) -> list[int]:
    """`pid` and every process below it, parents first."""
    out = subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout
    return [pid, *(p for child in out.split() for p in tree(int(child)))]


@contextmanager
def stopped(pids: list[int]) -> Iterator[None]:
    """`pids` stopped (SIGSTOP) until the block ends, then continued: what a stall looks like
    to a client; the kernel still accepts connections, nothing answers."""
    try:
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        yield
    finally:
        for pid in pids:
            os.kill(pid, signal.SIGCONT)
