"""flows/temporary_api.py `TemporaryAPI.wait`: children that die at start are started again up to
3 tries in all; one that never answers is stopped. Stand-in children, no Prefect server."""

import subprocess

import pytest

from flows.temporary_api import TemporaryAPI
from mnist.errors import MnistError
from tests.servers import free_port


class _Stub(TemporaryAPI):
    """A TemporaryAPI whose child is `command` on a port where nothing answers."""

    def __init__(self, command: list[str]) -> None:
        self.command, self.spawned = command, 0
        super().__init__()

    def _spawn(self) -> subprocess.Popen:
        self.port, self.spawned = free_port(), self.spawned + 1
        return subprocess.Popen(self.command)


def test_a_child_that_keeps_dying_is_started_three_times_then_reported():
    api = _Stub(["sh", "-c", "exit 7"])
    with pytest.raises(MnistError, match=r"^Prefect's temporary API exited with code 7 at start$"):
        api.wait(30)
    assert api.spawned == 3


def test_a_child_that_never_answers_is_stopped_at_the_timeout():
    api = _Stub(["sleep", "30"])
    with pytest.raises(MnistError, match=r"^Prefect's temporary API did not answer within 0 s$"):
        api.wait(0.3)
    assert api.process.poll() is not None and api.spawned == 1
