"""Prefect's temporary API started early (flows/temporary_api.py), in fresh processes with their own
Prefect home, as `mnist train` starts it."""

import json
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # real servers and processes: the full suite only

PROBE = """
import json, sys, time
from flows.temporary_api import TemporaryAPI, start_early
import prefect.settings  # its import (about 1 s on a loaded machine) is not the wait measured
started = time.perf_counter()
wait = start_early()
returned = time.perf_counter() - started
wait()
server = TemporaryAPI._current
import httpx
from prefect import flow

@flow
def hello():
    from prefect.client.orchestration import get_client
    return str(get_client(sync_client=True).api_url)

health = httpx.get(server.url + "/health").status_code if server else None
print(json.dumps({"returned_s": returned, "running": bool(server), "health": health,
                  "flow_api": hello(), "api": server.url if server else None,
                  "pid": server.process.pid if server else None,
                  "server_imported": "prefect.server.api.server" in sys.modules}))
"""


def probe(tmp_path, **env) -> dict:
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path), **env}
    out = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_api_url_starts_the_temporary_api_in_the_background(tmp_path):
    result = probe(tmp_path)
    assert result["running"] and result["health"] == 200
    assert result["returned_s"] < 1.0  # the caller goes on while the server boots
    assert result["flow_api"].rstrip("/") == result["api"]  # the flow used that server
    assert not result["server_imported"]  # Prefect's server code stays out of the caller
    deadline = time.monotonic() + 15  # the server ends with its parent
    while Path(f"/proc/{result['pid']}").exists():
        assert time.monotonic() < deadline, "the temporary API outlived its parent"
        time.sleep(0.2)


def test_a_configured_api_is_left_alone(tmp_path, prefect_api_url):
    """Any configured API: the session's (a `prefect server` of its own costs 20 s)."""
    api_url = prefect_api_url.rstrip("/")
    result = probe(tmp_path, PREFECT_API_URL=api_url)
    assert not result["running"] and result["flow_api"].rstrip("/") == api_url


def test_prefect_still_builds_an_ephemeral_server_app():
    """What `flows.temporary_api_child.create_app` relies on (ADR 0032): Prefect's `create_app`
    takes `ephemeral`, and an ephemeral server schedules fewer background services than a full
    one (not the deployment scheduler): a Prefect upgrade that drops either fails here."""
    import inspect

    from prefect.server.api import server
    from prefect.server.services.perpetual_services import get_perpetual_services

    assert "ephemeral" in inspect.signature(server.create_app).parameters
    ephemeral = {c.function.__name__ for c in get_perpetual_services(True, False)}
    every = {c.function.__name__ for c in get_perpetual_services(False, False)}
    assert ephemeral < every
    assert {"schedule_deployments", "monitor_late_runs"} <= every - ephemeral
