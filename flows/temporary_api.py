"""Prefect's temporary API, started early and dying with its parent.

With no PREFECT_API_URL, Prefect starts a temporary API server in a subprocess when the first
flow runs (`SubprocessASGIServer`): 5-10 s on a 2-core machine during which nothing else
happens, after importing Prefect's whole server (2-3 s) into the flow's own process. Here a
command that is about to run a flow calls `start_early()` first: Prefect's own server command
starts in a child at once, without that import, while the caller imports TensorFlow; the flows
then use it as a configured API.
"""

from __future__ import annotations

import contextlib
import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

from mnist.env import TEMPORARY_PREFECT_API
from mnist.errors import MnistError

if TYPE_CHECKING:
    from prefect.settings.context import SettingKey

_settings = contextlib.ExitStack()  # the process's Prefect settings, pointing at the server


class TemporaryAPI:
    """Prefect's temporary API server (uvicorn, as `SubprocessASGIServer` runs it: no UI, only
    the services of an ephemeral server) as a child that dies with this process, even by
    `kill -9`, and that a Ctrl-C at the terminal does not stop before this process is done
    with it (`flows/temporary_api_child.py`)."""

    _current: TemporaryAPI | None = None

    def __init__(self) -> None:
        self.process = self._spawn()

    def _spawn(self) -> subprocess.Popen:
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        root = Path(__file__).resolve().parent.parent  # where `flows` is, not the working dir
        args = [
            "--app-dir",
            str(root),
            "--factory",
            "flows.temporary_api_child:create_app",  # Prefect's app, as an ephemeral server
            "--host",
            "127.0.0.1",
            "--port",
            str(self.port),
            "--log-level",
            "error",
            "--lifespan",
            "on",
        ]
        from prefect.settings import get_current_settings  # light: no server code

        settings = get_current_settings().to_environment_variables(exclude_unset=True)
        env = {**os.environ, "PREFECT_UI_ENABLED": "0", **settings}
        # -P: the working directory (maybe another project's `flows/`) stays off sys.path
        command = [sys.executable, "-P", "-m", "flows.temporary_api_child", str(os.getpid()), *args]
        return subprocess.Popen(command, env=env, start_new_session=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/api"

    def wait(self, timeout: float) -> None:
        """Until the server answers; a child that lost its port to another process is started
        again on another one. One that never answers is stopped."""
        from mnist.waiting import Gone, answers, wait_until

        tries = 1

        def gone() -> str | None:
            nonlocal tries
            if (code := self.process.poll()) is None:
                return None
            if tries == 3:
                return f"Prefect's temporary API exited with code {code} at start"
            self.process, tries = self._spawn(), tries + 1  # on another port
            return None

        try:  # the URL is asked each time: a child started again has another port
            wait_until(lambda: answers(f"{self.url}/health")(), timeout, 0.05, gone)
        except Gone as exc:
            raise MnistError(str(exc)) from None
        except TimeoutError:
            self.stop()
            raise MnistError(
                f"Prefect's temporary API did not answer within {timeout:.0f} s"
            ) from None

    def stop(self) -> None:
        self.process.terminate()
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.process.wait(5)
        self.process.kill()
        self.process.wait()


def start_early() -> Callable[[], None]:
    """Start the temporary API if flows will need one; returns the function that waits for it
    and points this process's Prefect settings at it. One server per process."""
    from prefect.settings import PREFECT_API_URL, PREFECT_SERVER_ALLOW_EPHEMERAL_MODE

    if PREFECT_API_URL.value() or not PREFECT_SERVER_ALLOW_EPHEMERAL_MODE.value():
        return lambda: None
    server = TemporaryAPI._current = TemporaryAPI._current or TemporaryAPI()

    def started() -> None:
        from prefect.settings import (
            PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS,
            PREFECT_UI_URL,
            temporary_settings,
        )

        if PREFECT_API_URL.value() == server.url:
            return
        try:
            server.wait(PREFECT_SERVER_EPHEMERAL_STARTUP_TIMEOUT_SECONDS.value())
        except MnistError:
            TemporaryAPI._current = None  # the next command starts another
            raise
        os.environ[TEMPORARY_PREFECT_API] = server.url
        # no UI to link to: it is off, and the server ends with this process
        updates: dict[SettingKey, str] = {PREFECT_API_URL: server.url, PREFECT_UI_URL: ""}
        _settings.enter_context(temporary_settings(updates=updates))

    return started
