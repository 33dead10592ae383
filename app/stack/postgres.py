"""Running PostgreSQL (Debian's package): one launcher for the stack and for the tests.

`PostgreSQL` initialises a data directory, runs the postmaster as a foreground child of this
process (not detached as `pg_ctl` does) that the kernel stops when this process dies, even by
`kill -9`, waits until it takes connections and creates databases. Run as root, it runs the
server as the user `postgres` (PostgreSQL refuses root). `serve` is the stack's `postgres`
piece under supervisord; `wait` is what the other pieces wait for.
"""

from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.stack.config import DATABASES, Stack, StackError
from app.stack.credentials import write_private
from app.stack.processes import end, postgres_leftovers
from mnist.waiting import Gone, never, wait_until

if TYPE_CHECKING:
    import psycopg

STOP_SIGNALS = {"smart": signal.SIGTERM, "fast": signal.SIGINT, "immediate": signal.SIGQUIT}
"""PostgreSQL's shutdown modes and the signal that asks the postmaster for each."""


def postgres_bin() -> Path:
    """The directory of the newest installed PostgreSQL's programs."""
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if found:
        return found[-1].parent
    if on_path := shutil.which("postgres"):
        return Path(on_path).parent
    raise StackError("PostgreSQL is not installed (Debian: apt-get install postgresql)")


def _as_owner() -> dict[str, Any]:
    """Popen arguments that run PostgreSQL as `postgres` when we are root (it refuses root)."""
    if os.geteuid() != 0:
        return {}
    return {"user": "postgres", "group": "postgres", "extra_groups": []}


def _dies_with_parent() -> Callable[[], None] | None:
    """A `preexec_fn` that has the kernel send the child SIGQUIT (PostgreSQL's immediate
    shutdown) when this process dies; it runs after Popen switched the user, which would
    otherwise clear it. Linux only; elsewhere the child outlives a killed parent."""
    if sys.platform != "linux":
        return None
    import ctypes

    prctl, parent = ctypes.CDLL(None, use_errno=True).prctl, os.getpid()

    def preexec() -> None:
        prctl(1, signal.SIGQUIT)  # PR_SET_PDEATHSIG
        if os.getppid() != parent:  # the parent died before the line above
            os._exit(1)

    return preexec


class PostgreSQL:
    """A PostgreSQL server on 127.0.0.1:`port` with its data in `data` (`init` creates it):
    user `postgres` with `password` over TCP (scram-sha-256), or trusted without one;
    `settings` are extra `-c name=value`; its output goes to `log` (else to ours)."""

    def __init__(
        self,
        data: Path,
        port: int,
        password: str | None = None,
        settings: Mapping[str, str] | None = None,
        log: Path | None = None,
    ) -> None:
        self.data, self.port, self.password = data, port, password
        self.settings, self.log = dict(settings or {}), log
        self.process: subprocess.Popen | None = None

    def init(self) -> None:
        """initdb, unless the data directory holds a cluster already."""
        if (self.data / "PG_VERSION").exists():
            return
        self.data.mkdir(parents=True, exist_ok=True)
        root = os.geteuid() == 0
        if root:
            shutil.chown(self.data, "postgres", "postgres")
            self.data.chmod(0o700)
        args = [str(postgres_bin() / "initdb"), "-D", str(self.data), "-U", "postgres"]
        pwfile = self.data.parent / ".pg-pwfile"  # read by initdb as `postgres`, then removed
        if self.password is None:
            args += ["-A", "trust"]
        else:
            write_private(pwfile, self.password + "\n")
            if root:
                shutil.chown(pwfile, "postgres", "postgres")
            args += ["--auth-host=scram-sha-256", "--auth-local=peer", f"--pwfile={pwfile}"]
        try:
            init = subprocess.run(
                [*args, "--no-sync"], capture_output=True, text=True, **_as_owner()
            )
        finally:
            pwfile.unlink(missing_ok=True)
        if init.returncode:
            raise StackError(f"initdb {self.data} failed: {init.stderr.strip().splitlines()[-1:]}")

    def start(self) -> subprocess.Popen:
        """The postmaster, as a child of this process that dies with it."""
        args = [
            str(postgres_bin() / "postgres"),
            *("-D", str(self.data), "-p", str(self.port), "-k", str(self.data)),
            *("-c", "listen_addresses=127.0.0.1"),
            *(arg for name, value in self.settings.items() for arg in ("-c", f"{name}={value}")),
        ]
        out = self.log.open("a") if self.log else None
        try:
            self.process = subprocess.Popen(
                args,
                stdout=out,
                stderr=subprocess.STDOUT if out else None,
                preexec_fn=_dies_with_parent(),  # only prctl: no lock is taken in the child
                **_as_owner(),
            )
        finally:
            if out:
                out.close()
        return self.process

    def wait(self, timeout: float = 60, gone: Callable[[], str | None] = never) -> None:
        """Until the server takes connections; its process's exit or a reason from `gone`
        (the supervisor exited) ends the wait early."""

        def why() -> str | None:
            if self.process is not None and self.process.poll() is not None:
                return f"PostgreSQL exited with {self.process.returncode}"
            reason = gone()
            return reason and f"postgres did not start: {reason}"

        try:
            wait_until(self._takes_connections, timeout, 0.3, why)
        except Gone as exc:
            raise StackError(str(exc)) from None
        except TimeoutError:
            raise StackError(f"PostgreSQL on port {self.port} did not start") from None

    def _takes_connections(self) -> bool:
        import psycopg

        try:
            with self.connect():
                return True
        except psycopg.OperationalError:
            return False

    def stop(self, mode: str = "fast", timeout: float = 60) -> int | None:
        """Shut the server down (`smart`, `fast` or `immediate`) and reap it; killed if it has
        not stopped within `timeout` s."""
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(STOP_SIGNALS[mode])
        try:
            return self.process.wait(timeout)
        except subprocess.TimeoutExpired:
            self.process.kill()
            return self.process.wait()

    def connect(self, database: str = "postgres") -> psycopg.Connection:
        import psycopg

        return psycopg.connect(
            host="127.0.0.1",
            port=self.port,
            user="postgres",
            dbname=database,
            password=self.password,
            autocommit=True,
            connect_timeout=2,
        )

    def databases(self) -> set[str]:
        with self.connect() as conn:
            return {row[0] for row in conn.execute("SELECT datname FROM pg_database")}

    def create(self, *names: str) -> None:
        """Create the databases `names` that do not exist yet."""
        have = self.databases()
        with self.connect() as conn:
            for name in names:
                if name not in have:
                    conn.execute(f'CREATE DATABASE "{name}"')  # type: ignore[arg-type]

    def url(self, database: str, driver: str | None = None) -> str:
        """SQLAlchemy's URL of `database` (with the password, if any)."""
        scheme = f"postgresql+{driver}" if driver else "postgresql"
        user = f"postgres:{self.password}" if self.password else "postgres"
        return f"{scheme}://{user}@127.0.0.1:{self.port}/{database}"


def _stack_server(stack: Stack) -> PostgreSQL:
    return PostgreSQL(stack.pg_data, stack.pg_port, password=stack.pg_password)


def serve(stack: Stack) -> int:
    """The stack's PostgreSQL in the foreground for supervisord: initialised on first start,
    its databases created, stopped fast (SIGINT) when supervisord stops it. After a crash it
    starts on the same data directory (PostgreSQL recovers from its WAL) once the processes of
    the killed postmaster are gone (they hold its shared memory); a postmaster killed by a
    signal ends this process by the same signal, which supervisord logs as the cause."""
    if ended := end(lambda: postgres_leftovers(stack)):
        print(f"ended what the last PostgreSQL left running: pids {ended}", flush=True)
    server = _stack_server(stack)
    server.init()
    process = server.start()
    for signum in (signal.SIGTERM, signal.SIGINT):  # PostgreSQL's fast shutdown is SIGINT
        signal.signal(signum, lambda *_: process.send_signal(signal.SIGINT))
    server.wait()
    server.create(*DATABASES)
    code = process.wait()
    if code >= 0:
        return code
    cause = signal.Signals(-code)
    print(f"PostgreSQL (pid {process.pid}) was ended by {cause.name}", flush=True)
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, signal.SIG_DFL)
    if cause in (signal.SIGKILL, signal.SIGTERM, signal.SIGINT, signal.SIGHUP):
        os.kill(os.getpid(), cause)  # no core dump: supervisord logs the same cause
    return 128 + cause


def wait(stack: Stack, timeout: float, gone: Callable[[], str | None] = never) -> None:
    """Until the stack's PostgreSQL takes connections and has its databases (which its own
    process creates once it is up)."""
    deadline = time.monotonic() + timeout
    server = _stack_server(stack)
    server.wait(timeout, gone)

    def created() -> bool:
        import psycopg

        try:
            return set(DATABASES) <= server.databases()
        except psycopg.Error:
            return False

    def why() -> str | None:
        reason = gone()
        return reason and f"postgres did not start: {reason}"

    try:
        wait_until(created, max(deadline - time.monotonic(), 0), 0.3, why)
    except Gone as exc:
        raise StackError(str(exc)) from None
    except TimeoutError:
        raise StackError("the stack's databases were not created") from None
