"""Bringing the stack up and down: supervisord runs `stack/supervisord.conf` in the
background, `up` waits until each piece answers and deploys `prefect.yaml`, `down` stops every
process of the stack (found by the `MNIST_STACK_DIR` each inherits, so also what a killed
supervisord left behind)."""

from __future__ import annotations

import contextlib
import functools
import os
import signal
import subprocess
import time
from collections.abc import Callable
from typing import TYPE_CHECKING

from app.stack import postgres, supervisor
from app.stack.config import BIN, ROOT, USER, Stack, StackError
from app.stack.processes import end, leftovers, members
from flows.automations import check_url, ensure_automations
from mnist.errors import MnistError, first_line
from mnist.settings import AlertSettings
from mnist.waiting import Gone, answers, never, wait_until

if TYPE_CHECKING:
    from prefect.settings.context import SettingKey  # a name only for type checkers


def wait(
    stack: Stack, what: str, timeout: float = 180, gone: Callable[[], str | None] = never
) -> None:
    """Until `what` (postgres, its databases, prefect, mlflow or dask) answers; `gone` says why to
    stop waiting early (the process manager exited)."""
    if what == "postgres":
        postgres.wait(stack, timeout, gone)
        return
    url = {
        "prefect": f"{stack.prefect_api}/health",
        "mlflow": f"{stack.mlflow_uri}/health",
        "dask": f"http://127.0.0.1:{stack.dask_http_port}/health",  # the scheduler's
    }[what]
    auth = (USER, stack.password()) if stack.secured and what != "dask" else None
    try:
        wait_until(answers(url, auth), timeout, 0.5, gone)
    except Gone as exc:
        raise StackError(f"{what} did not start: {exc}") from None
    except TimeoutError:
        raise StackError(f"{what} did not answer at {url} within {timeout:.0f} s") from None


def prepare(stack: Stack, piece: str, *needs: str) -> None:
    """Before the server `piece` starts (again): end what its killed predecessor left running
    (uvicorn's workers hold its port), then wait until each of `needs` answers."""
    if ended := end(lambda: leftovers(stack, piece)):
        print(f"ended what the last {piece} left running: pids {ended}", flush=True)
    for what in needs:
        wait(stack, what)


def alert_url() -> str | None:
    """Where alerts go (`MNIST_ALERT_URL`), or None; a StackError for a bad `MNIST_ALERT_*`."""
    from pydantic import ValidationError

    try:
        url = AlertSettings().url
    except ValidationError as exc:
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"])).upper()
        raise StackError(f"MNIST_ALERT_{where}: {error['msg']}") from None
    return url.get_secret_value() if url is not None else None


def automations() -> dict[str, str]:
    """The zombie automation and, with `MNIST_ALERT_URL`, the alerts, on the Prefect server
    configured now; what happened to each. StackError when they cannot be made."""
    url = alert_url()
    try:
        return ensure_automations(url)
    except MnistError as exc:
        raise StackError(str(exc)) from None
    except Exception as exc:  # the Prefect server refused or is gone
        raise StackError(f"automations: {first_line(exc)}") from None


def up(stack: Stack, timeout: float = 300) -> float:
    """Start the stack under supervisord (its log: <dir>/logs/stack.log, each piece's:
    <dir>/logs/<piece>.log), wait until every piece is healthy, deploy prefect.yaml and make
    the automations; returns the seconds it took."""
    started = time.monotonic()
    if url := alert_url():  # a bad MNIST_ALERT_* stops it before anything starts
        try:
            check_url(url)
        except MnistError as exc:
            raise StackError(str(exc)) from None
    if (pid := supervisor.running(stack)) is not None:
        raise StackError(f"the stack in {stack.dir} is already running (supervisord pid {pid})")
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
    proc = supervisor.start(stack, env)
    gone = functools.partial(_gone, stack, proc)
    try:
        for what in ("postgres", "prefect", "mlflow", "dask"):
            left = timeout - (time.monotonic() - started)
            wait(stack, what, max(left, 1), gone)
        _deploy(stack, env)
    except BaseException:
        down(stack)
        raise
    return time.monotonic() - started


def _gone(stack: Stack, proc: subprocess.Popen) -> str | None:
    """Why `up` should stop waiting: supervisord exited, or a piece exited while the stack
    was coming up (a restart would only hide a piece that cannot start)."""
    logs = stack.dir / "logs"
    if proc.poll() is not None:
        lines = supervisor.log(stack).read_text(errors="replace").strip().splitlines()
        last = next((line for line in lines if line.startswith("Error:")), "it logged nothing")
        return f"supervisord exited with {proc.returncode} ({last}); see {logs}"
    _, exits = supervisor.history(stack, proc.pid)
    if exits:
        piece, cause = next(iter(exits.items()))
        return f"{piece} exited ({cause}); see {logs / piece}.log"
    return None


def _deploy(stack: Stack, env: dict[str, str]) -> None:
    """The work pool, the deployments of prefect.yaml (with the retrain trigger), the
    automation that crashes flow runs whose heartbeats stopped (a worker or its machine died),
    and the alerts when `MNIST_ALERT_URL` is set; all idempotent."""
    from prefect.settings import PREFECT_API_AUTH_STRING, PREFECT_API_URL, temporary_settings

    deploy(env)
    settings: dict[SettingKey, str] = {PREFECT_API_URL: stack.prefect_api}
    if stack.secured:
        settings[PREFECT_API_AUTH_STRING] = env["PREFECT_API_AUTH_STRING"]
    with temporary_settings(settings):
        automations()


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


def down(stack: Stack, timeout: float = 90) -> bool:
    """Stop supervisord and everything it runs (also what a killed supervisord left behind);
    False if nothing was running."""
    pid = supervisor.running(stack)
    if pid is None and not members(stack):
        return False
    if pid is not None:  # it stops the workers, then the servers, then PostgreSQL
        os.kill(pid, signal.SIGTERM)

    def stopped() -> bool:
        nonlocal pid
        if not (left := members(stack)):
            return True
        if pid is None or supervisor.running(stack) is None:  # its orphans are left
            for orphan in left:
                with contextlib.suppress(OSError):
                    os.kill(orphan, signal.SIGTERM)
            pid = None
        return False

    with contextlib.suppress(TimeoutError):
        wait_until(stopped, timeout, 0.5)
    for orphan in members(stack):
        with contextlib.suppress(OSError):
            os.kill(orphan, signal.SIGKILL)
    supervisor.pidfile(stack).unlink(missing_ok=True)
    return True
