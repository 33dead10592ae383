"""Prefect's temporary API started early (flows/api.py), in fresh processes with their own
Prefect home, as `mnist train` starts it."""

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

pytestmark = pytest.mark.slow  # real servers and processes: the full suite only

PROBE = """
import json, time
from flows.api import start_early
from prefect.server.api.server import SubprocessASGIServer
started = time.perf_counter()
wait = start_early()
returned = time.perf_counter() - started
wait()
server = SubprocessASGIServer()
import httpx
from prefect import flow

@flow
def hello():
    from prefect.client.orchestration import get_client
    return str(get_client(sync_client=True).api_url)

health = httpx.get(server.api_url + "/health").status_code if server.running else None
print(json.dumps({"returned_s": returned, "running": server.running, "health": health,
                  "flow_api": hello(), "api": server.api_url if server.running else None}))
"""


def probe(tmp_path, **env) -> dict:
    environ = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PREFECT_HOME": str(tmp_path),
               **env}  # fmt: skip
    out = subprocess.run([sys.executable, "-c", PROBE], cwd=ROOT, env=environ,
                         capture_output=True, text=True, timeout=300)  # fmt: skip
    assert out.returncode == 0, out.stderr[-3000:]
    return json.loads(out.stdout.strip().splitlines()[-1])


def test_no_api_url_starts_the_temporary_api_in_the_background(tmp_path):
    result = probe(tmp_path)
    assert result["running"] and result["health"] == 200
    assert result["returned_s"] < 1.0  # the caller goes on while the server boots
    assert result["flow_api"].rstrip("/") == result["api"]  # the flow used that server


def test_a_configured_api_is_left_alone(tmp_path, prefect_server):
    api_url, _ = prefect_server
    result = probe(tmp_path, PREFECT_API_URL=api_url)
    assert not result["running"] and result["flow_api"].rstrip("/") == api_url
