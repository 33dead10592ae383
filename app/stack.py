"""The production stack on one machine: PostgreSQL, `prefect server` and `mlflow server` on it
(MLflow with proxied artifacts), and process workers on the `mnist-process` pool, run together
by honcho (a Procfile runner) from `stack/Procfile`.

    python -m app.stack up        # `make stack-up`: start, health-check, deploy, print exports
    python -m app.stack down      # `make stack-down`
    python -m app.stack env       # the export lines a client needs
    python -m app.stack automation   # the zombie automation, on the PREFECT_API_URL server

Settings come from variables: `MNIST_STACK_DIR` (state, logs; default `.stack` in the
checkout), `MNIST_STACK_HOST` (default 127.0.0.1), `MNIST_STACK_PG_PORT` (5432),
`MNIST_STACK_PREFECT_PORT` (4200), `MNIST_STACK_MLFLOW_PORT` (5000), `MNIST_STACK_WORKERS` (1).
Bound anywhere but loopback, everything asks for a password (`MNIST_STACK_PASSWORD`, else one
generated into `<dir>/secrets.env`): MLflow's basic-auth app, Prefect's API auth string.
State (the databases, the artifacts) stays in the directory between restarts.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import shlex
import shutil
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path

import httpx

from flows.automations import HEARTBEAT_SECONDS, ensure_zombie_detection
from mnist.settings import loopback

ROOT = Path(__file__).resolve().parent.parent
PROCFILE = ROOT / "stack" / "Procfile"
BIN = Path(sys.executable).parent
DATABASES = ("prefect", "mlflow", "mlflow_auth", "mnist_data")
USER = "admin"


class StackError(Exception):
    """The stack cannot start or stop: one line naming why."""


@dataclass(frozen=True)
class Stack:
    dir: Path
    host: str
    pg_port: int
    prefect_port: int
    mlflow_port: int
    workers: int

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> Stack:
        env = (os.environ if environ is None else environ).get
        return cls(
            dir=Path(env("MNIST_STACK_DIR", str(ROOT / ".stack"))).expanduser().resolve(),
            host=env("MNIST_STACK_HOST", "127.0.0.1"),
            pg_port=int(env("MNIST_STACK_PG_PORT", "5432")),
            prefect_port=int(env("MNIST_STACK_PREFECT_PORT", "4200")),
            mlflow_port=int(env("MNIST_STACK_MLFLOW_PORT", "5000")),
            workers=int(env("MNIST_STACK_WORKERS", "1")),
        )

    @property
    def secured(self) -> bool:
        """Authentication is on unless everything binds a loopback address."""
        return not loopback(self.host)

    @property
    def reach(self) -> str:
        """The address clients on this machine use."""
        return "127.0.0.1" if self.host in ("0.0.0.0", "::") else self.host

    def password(self) -> str:
        return os.environ.get("MNIST_STACK_PASSWORD") or self._secret("MNIST_STACK_PASSWORD")

    def _secret(self, name: str) -> str:
        """A secret kept in <dir>/secrets.env (mode 0600), generated the first time."""
        path = self.dir / "secrets.env"
        text = path.read_text() if path.exists() else ""
        kept = dict(line.partition("=")[::2] for line in text.splitlines() if line)
        if name not in kept:
            kept[name] = secrets.token_urlsafe(24)
            _private(path, "".join(f"{k}={v}\n" for k, v in kept.items()))
        return kept[name]

    def database(self, name: str, driver: str = "psycopg") -> str:
        secret = self._secret("MNIST_STACK_PG_PASSWORD")
        return f"postgresql+{driver}://postgres:{secret}@127.0.0.1:{self.pg_port}/{name}"

    @property
    def prefect_api(self) -> str:
        return f"http://{self.reach}:{self.prefect_port}/api"

    @property
    def mlflow_uri(self) -> str:
        return f"http://{self.reach}:{self.mlflow_port}"

    def client_env(self) -> dict[str, str]:
        """What a client needs: the two URLs (and the added-data store), with credentials."""
        env = {
            "PREFECT_API_URL": self.prefect_api,
            "MLFLOW_TRACKING_URI": self.mlflow_uri,
            "MNIST_DATASTORE": self.database("mnist_data"),
        }
        if self.secured:
            password = self.password()
            env |= {
                "PREFECT_API_AUTH_STRING": f"{USER}:{password}",
                "MLFLOW_TRACKING_USERNAME": USER,
                "MLFLOW_TRACKING_PASSWORD": password,
            }
        return env

    def server_env(self) -> dict[str, str]:
        """The environment of every process of the Procfile."""
        env = {
            **self.client_env(),
            "MNIST_STACK_DIR": str(self.dir),
            "MNIST_STACK_HOST": self.host,
            "MNIST_STACK_PG_PORT": str(self.pg_port),
            "MNIST_STACK_PREFECT_PORT": str(self.prefect_port),
            "MNIST_STACK_MLFLOW_PORT": str(self.mlflow_port),
            "MNIST_STACK_MLFLOW_DB": self.database("mlflow"),
            "MNIST_STACK_ARTIFACTS": str(self.dir / "artifacts"),
            "MNIST_STACK_MLFLOW_APP": "",
            "PREFECT_HOME": str(self.dir / "prefect"),
            "PREFECT_API_DATABASE_CONNECTION_URL": self.database("prefect", "asyncpg"),
            "PREFECT_SERVER_ANALYTICS_ENABLED": "false",
            "PREFECT_UI_ENABLED": "true",
            "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false",
            "MLFLOW_DISABLE_TELEMETRY": "true",
            "PREFECT_FLOWS_HEARTBEAT_FREQUENCY": str(HEARTBEAT_SECONDS),
            "PATH": f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}",
        }
        if self.secured:
            env["PREFECT_SERVER_API_AUTH_STRING"] = env["PREFECT_API_AUTH_STRING"]
            env["MNIST_STACK_MLFLOW_APP"] = "--app-name basic-auth"
            env["MLFLOW_AUTH_CONFIG_PATH"] = str(self._auth_config())
            env["MLFLOW_FLASK_SERVER_SECRET_KEY"] = self._secret("MLFLOW_FLASK_SERVER_SECRET_KEY")
        return env

    def _auth_config(self) -> Path:
        path = self.dir / "mlflow-auth.ini"
        text = (
            f"[mlflow]\ndefault_permission = READ\n"
            f"database_uri = {self.database('mlflow_auth')}\n"
            f"admin_username = {USER}\nadmin_password = {self.password()}\n"
            "authorization_function = "
            "mlflow.server.auth:authenticate_request_basic_auth\n"
        )
        _private(path, text)
        return path

    def exports(self) -> str:
        return "".join(f"export {k}={shlex.quote(v)}\n" for k, v in self.client_env().items())


def _private(path: Path, text: str) -> None:
    """Write `text` to `path`, mode 0600, atomically (a temp file renamed over it): a kill
    mid-write never leaves a half-written secret."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(text)
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)


# ----------------------------------------------------------------------------- PostgreSQL


def _postgres_bin() -> Path:
    found = sorted(Path("/usr/lib/postgresql").glob("*/bin/postgres"))
    if not found and not shutil.which("postgres"):
        raise StackError("PostgreSQL is not installed (Debian: apt-get install postgresql)")
    return found[-1].parent if found else Path(shutil.which("postgres")).parent  # type: ignore[arg-type]


def _as_owner() -> dict:
    """Popen arguments that run PostgreSQL as `postgres` when we are root (it refuses root)."""
    return {"user": "postgres", "group": "postgres"} if os.geteuid() == 0 else {}


def postgres(stack: Stack) -> int:
    """PostgreSQL in the foreground for honcho: initialised on first start, its databases
    created, stopped fast (SIGINT) when honcho stops the stack."""
    bindir, data = _postgres_bin(), stack.dir / "postgres"
    if not (data / "PG_VERSION").exists():
        data.mkdir(parents=True, exist_ok=True)
        if os.geteuid() == 0:
            shutil.chown(data, "postgres", "postgres")
            data.chmod(0o700)
        pwfile = stack.dir / ".pg-pwfile"  # read by initdb as `postgres`, then removed
        _private(pwfile, stack._secret("MNIST_STACK_PG_PASSWORD") + "\n")
        if os.geteuid() == 0:
            shutil.chown(pwfile, "postgres", "postgres")
        init = subprocess.run(
            [
                str(bindir / "initdb"),
                "-D",
                str(data),
                "-U",
                "postgres",
                "--auth-host=scram-sha-256",
                "--auth-local=peer",
                f"--pwfile={pwfile}",
                "--no-sync",
            ],
            capture_output=True,
            text=True,
            **_as_owner(),
        )
        pwfile.unlink(missing_ok=True)
        if init.returncode:
            raise StackError(f"initdb {data} failed: {init.stderr.strip().splitlines()[-1:]}")
    server = subprocess.Popen(
        [
            str(bindir / "postgres"),
            "-D",
            str(data),
            "-p",
            str(stack.pg_port),
            "-k",
            str(data),
            "-c",
            "listen_addresses=127.0.0.1",
        ],
        **_as_owner(),
    )
    for signum in (signal.SIGTERM, signal.SIGINT):  # PostgreSQL's fast shutdown is SIGINT
        signal.signal(signum, lambda *_: server.send_signal(signal.SIGINT))
    _wait_postgres(stack, server)
    _create_databases(stack)
    return server.wait()


def _connect(stack: Stack, database: str = "postgres"):
    import psycopg

    return psycopg.connect(
        host="127.0.0.1",
        port=stack.pg_port,
        user="postgres",
        dbname=database,
        password=stack._secret("MNIST_STACK_PG_PASSWORD"),
        autocommit=True,
        connect_timeout=2,
    )


def _wait_postgres(
    stack: Stack,
    server: subprocess.Popen | None = None,
    timeout: float = 60,
    gone: Callable[[], str | None] = lambda: None,
) -> None:
    import psycopg

    deadline = time.monotonic() + timeout
    while True:
        try:
            with _connect(stack):
                return
        except psycopg.OperationalError:
            if server is not None and server.poll() is not None:
                raise StackError(f"PostgreSQL exited with {server.returncode}") from None
            if why := gone():
                raise StackError(f"postgres did not start: {why}") from None
            if time.monotonic() > deadline:
                raise StackError(f"PostgreSQL on port {stack.pg_port} did not start") from None
            time.sleep(0.3)


def _create_databases(stack: Stack) -> None:
    with _connect(stack) as conn:
        have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
        for name in DATABASES:
            if name not in have:
                conn.execute(f'CREATE DATABASE "{name}"')


# ----------------------------------------------------------------------------- waiting


def wait(
    stack: Stack, what: str, timeout: float = 180, gone: Callable[[], str | None] = lambda: None
) -> None:
    """Until `what` (postgres, its databases, prefect or mlflow) answers; `gone` says why to
    stop waiting early (the process manager exited)."""
    deadline = time.monotonic() + timeout
    if what == "postgres":
        _wait_postgres(stack, timeout=timeout, gone=gone)
        import psycopg

        while True:  # and its databases, which the postgres process creates once it is up
            try:
                with _connect(stack) as conn:
                    have = {row[0] for row in conn.execute("SELECT datname FROM pg_database")}
            except psycopg.Error:
                have = set()
            if set(DATABASES) <= have:
                return
            if why := gone():
                raise StackError(f"postgres did not start: {why}")
            if time.monotonic() > deadline:
                raise StackError("the stack's databases were not created")
            time.sleep(0.3)
    url = {"prefect": f"{stack.prefect_api}/health", "mlflow": f"{stack.mlflow_uri}/health"}[what]
    auth = (USER, stack.password()) if stack.secured else None
    while True:
        try:
            if httpx.get(url, timeout=2, auth=auth).status_code == 200:
                return
        except httpx.HTTPError:
            pass
        if why := gone():
            raise StackError(f"{what} did not start: {why}")
        if time.monotonic() > deadline:
            raise StackError(f"{what} did not answer at {url} within {timeout:.0f} s")
        time.sleep(0.5)


# ----------------------------------------------------------------------------- up and down


def _pidfile(stack: Stack) -> Path:
    return stack.dir / "honcho.pid"


def _running(stack: Stack) -> int | None:
    try:
        pid = int(_pidfile(stack).read_text())
        os.kill(pid, 0)
    except (OSError, ValueError):
        return None
    return pid


def up(stack: Stack, timeout: float = 300) -> float:
    """Start the stack under honcho (logs: <dir>/logs/stack.log), wait until every piece is
    healthy, deploy prefect.yaml; returns the seconds it took."""
    started = time.monotonic()
    if (pid := _running(stack)) is not None:
        raise StackError(f"the stack in {stack.dir} is already running (honcho pid {pid})")
    if left := members(stack):
        pids = ", ".join(map(str, left[:5]))
        raise StackError(
            f"processes of an earlier stack in {stack.dir} still run (pids {pids}):"
            " stop them with make stack-down"
        )
    (stack.dir / "logs").mkdir(parents=True, exist_ok=True)
    if os.geteuid() == 0:  # PostgreSQL, running as `postgres`, must reach its data directory
        stack.dir.chmod(stack.dir.stat().st_mode | 0o011)
        closed = [p for p in stack.dir.parents if not p.stat().st_mode & 0o001]
        if closed:
            raise StackError(
                f"PostgreSQL runs as the user postgres, who cannot enter {closed[0]}:"
                " choose another MNIST_STACK_DIR (or chmod o+x it)"
            )
    env = {**os.environ, **stack.server_env()}
    os.umask(0o077)  # the artifacts, logs and secrets the stack writes: its owner's alone
    log = (stack.dir / "logs" / "stack.log").open("a")
    proc = subprocess.Popen(
        [
            str(BIN / "honcho"),
            "start",
            "-f",
            str(PROCFILE),
            "-d",
            str(ROOT),
            "-c",
            f"worker={stack.workers}",
            "--no-colour",
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        env=env,
        start_new_session=True,
    )
    _pidfile(stack).write_text(str(proc.pid))

    def gone() -> str | None:
        if proc.poll() is None:
            return None
        lines = Path(log.name).read_text(errors="replace").splitlines()
        stopped = [line for line in lines if "stopped (rc=" in line]
        return f"{stopped[0].split('| ')[-1] if stopped else 'honcho exited'}; see {log.name}"

    try:
        for what in ("postgres", "prefect", "mlflow"):
            left = timeout - (time.monotonic() - started)
            wait(stack, what, max(left, 1), gone)
        _deploy(stack, env)
    except BaseException:
        down(stack)
        raise
    return time.monotonic() - started


def _deploy(stack: Stack, env: dict[str, str]) -> None:
    """The work pool, the deployments of prefect.yaml, and the automation that crashes flow
    runs whose heartbeats stopped (a worker or its machine died); all idempotent."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    deploy(env)
    settings = {PREFECT_API_URL: stack.prefect_api}
    if stack.secured:
        settings[PREFECT_API_AUTH_STRING] = env["PREFECT_API_AUTH_STRING"]
    with temporary_settings(settings):
        ensure_zombie_detection()


def deploy(env: dict[str, str]) -> None:
    """`prefect work-pool create mnist-process` and `prefect deploy --all` from the checkout,
    against the Prefect API that `env` names."""
    prefect = str(BIN / "prefect")
    for args in (
        ["work-pool", "create", "mnist-process", "--type", "process", "--overwrite"],
        ["--no-prompt", "deploy", "--all"],
    ):
        out = subprocess.run(
            [prefect, *args], cwd=ROOT, env=env, capture_output=True, text=True, timeout=300
        )
        if out.returncode:
            raise StackError(f"prefect {' '.join(args)} failed: {out.stderr.strip()[-500:]}")


def members(stack: Stack) -> list[int]:
    """Every process of the stack in `stack.dir`, found by the variable each one inherits
    (honcho starts each in a session of its own, and may itself be gone)."""
    mark = f"MNIST_STACK_DIR={stack.dir}".encode()
    found = []
    for proc in Path("/proc").glob("[0-9]*"):
        try:
            if mark in proc.joinpath("environ").read_bytes().split(b"\0"):
                found.append(int(proc.name))
        except OSError:  # gone meanwhile, or not ours to read
            continue
    return [pid for pid in found if pid != os.getpid()]


def down(stack: Stack, timeout: float = 60) -> bool:
    """Stop honcho and everything it runs (also what a killed honcho left behind); False if
    nothing was running."""
    pid = _running(stack)
    left = members(stack)
    if pid is None and not left:
        _pidfile(stack).unlink(missing_ok=True)
        return False
    if pid is not None:
        os.kill(pid, signal.SIGTERM)  # honcho stops its processes, each in its own session
    deadline = time.monotonic() + timeout
    while (left := members(stack)) and time.monotonic() < deadline:
        if pid is None or _running(stack) is None:  # honcho is gone; its orphans are not
            for orphan in left:
                with contextlib.suppress(OSError):
                    os.kill(orphan, signal.SIGTERM)
            pid = None
        time.sleep(0.5)
    for orphan in left:
        with contextlib.suppress(OSError):
            os.kill(orphan, signal.SIGKILL)
    _pidfile(stack).unlink(missing_ok=True)
    return True


def main(argv: list[str] | None = None) -> int:
    args = argv if argv is not None else sys.argv[1:]
    stack = Stack.from_env()
    try:
        if args[:1] == ["postgres"]:
            return postgres(stack)
        if args[:1] == ["wait"]:
            for what in args[1:]:
                wait(stack, what)
        elif args[:1] == ["up"]:
            seconds = up(stack)
            print(
                f"stack up in {seconds:.1f} s: Prefect {stack.prefect_api} (UI "
                f"http://{stack.reach}:{stack.prefect_port}), MLflow {stack.mlflow_uri}, "
                f"{stack.workers} worker(s) on mnist-process; logs {stack.dir / 'logs'}\n"
                "For a client:",
                file=sys.stderr,
            )
            print(stack.exports(), end="")
        elif args[:1] == ["down"]:
            print(
                "stack stopped" if down(stack) else f"no stack running in {stack.dir}",
                file=sys.stderr,
            )
        elif args[:1] == ["env"]:
            print(stack.exports(), end="")
        elif args[:1] == ["automation"]:  # for a Prefect server that `up` did not start
            made = ensure_zombie_detection()
            print("created" if made else "already there", file=sys.stderr)
        else:
            print(__doc__, file=sys.stderr)
            return 2
    except StackError as exc:
        print(f"stack: error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
