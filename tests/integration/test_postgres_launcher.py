"""app/stack/postgres.py on a real PostgreSQL: the one launcher of the stack and the tests."""

import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from app.stack.config import StackError
from app.stack.postgres import PostgreSQL
from mnist.waiting import wait_until
from tests.conftest import ROOT
from tests.servers import free_port

pytestmark = pytest.mark.slow

CHILD = """
from tests.servers import Postgres
import time
server = Postgres()
print(server.process.pid, server.root, flush=True)
time.sleep(600)
"""


def _alive(pid: int) -> bool:
    """Running: neither gone nor a zombie that no init reaped yet."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rpartition(")")[2].split()[0] != "Z"
    except OSError:
        return False


@pytest.fixture
def scratch() -> Iterator[Path]:
    """A directory the `postgres` user may enter (pytest's own are its owner's alone)."""
    root = Path(tempfile.mkdtemp(prefix="mnist-pg-test-"))
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
    yield root
    shutil.rmtree(root, ignore_errors=True)


def test_the_server_dies_with_the_process_that_started_it_even_by_kill_9():
    parent = subprocess.Popen(
        [sys.executable, "-c", CHILD], cwd=ROOT, stdout=subprocess.PIPE, text=True
    )
    pid, root = parent.stdout.readline().split()  # type: ignore[union-attr]
    try:
        assert _alive(int(pid))
        parent.send_signal(signal.SIGKILL)
        parent.wait()
        wait_until(lambda: not _alive(int(pid)), 20, 0.1)  # else: outlived the process
    finally:
        shutil.rmtree(root, ignore_errors=True)


def test_a_password_server_refuses_without_it_and_keeps_its_data_across_restarts(scratch):
    import psycopg

    server = PostgreSQL(scratch / "data", free_port(), password="pw", log=scratch / "log")
    server.init()
    server.start()
    try:
        server.wait(60)
        server.create("kept")
        with pytest.raises(psycopg.OperationalError, match="password"):
            psycopg.connect(host="127.0.0.1", port=server.port, user="postgres", dbname="kept")
        assert not (scratch / ".pg-pwfile").exists()  # initdb's password file is gone
        assert server.stop("fast") == 0
        server.init()  # a cluster is there: nothing to do
        server.start()
        server.wait(60)
        assert "kept" in server.databases()
        url = server.url("kept", "psycopg")
        assert url == f"postgresql+psycopg://postgres:pw@127.0.0.1:{server.port}/kept"
    finally:
        server.stop("immediate")


def test_a_server_that_cannot_start_ends_the_wait_with_its_exit(scratch):
    server = PostgreSQL(scratch / "data", free_port(), settings={"no_such_setting": "1"})
    server.init()
    server.start()  # refuses the setting at once
    started = time.monotonic()
    with pytest.raises(StackError, match=r"^PostgreSQL exited with 1$"):
        server.wait(60)
    assert time.monotonic() - started < 30
