"""app/stack/supervisor.py without a supervisord: restarts counted from its log (since it
last started, across its rotated backups), and the status table."""

from app.stack.config import Stack
from app.stack.supervisor import Piece, history, table

EARLIER = """\
2026-12-01 10:00:00,000 INFO supervisord started with pid 10
2026-12-01 10:00:01,000 INFO spawned: 'postgres' with pid 11
2026-12-01 10:00:05,000 WARN exited: postgres (terminated by SIGKILL; not expected)
2026-12-01 10:00:06,000 INFO spawned: 'postgres' with pid 12
2026-12-01 11:00:00,000 INFO supervisord started with pid 20
2026-12-01 11:00:01,000 INFO spawned: 'postgres' with pid 21
2026-12-01 11:00:01,100 INFO spawned: 'worker1' with pid 22
"""
LATEST = """\
2026-12-01 11:05:00,000 WARN exited: postgres (exit status 1; not expected)
2026-12-01 11:05:01,000 INFO spawned: 'postgres' with pid 23
2026-12-01 11:05:02,000 WARN exited: postgres (terminated by SIGKILL; not expected)
2026-12-01 11:05:03,000 INFO spawned: 'postgres' with pid 24
2026-12-01 11:06:00,000 INFO stopped: worker1 (terminated by SIGTERM)
"""


def test_restarts_are_counted_since_supervisord_last_started(tmp_path):
    stack = Stack.from_env({"MNIST_STACK_DIR": str(tmp_path)})
    logs = tmp_path / "logs"
    logs.mkdir()
    (logs / "stack.log.2").write_text("2026-11-30 INFO spawned: 'postgres' with pid 1\n")
    (logs / "stack.log.1").write_text(EARLIER)
    (logs / "stack.log").write_text(LATEST)
    spawns, exits = history(stack, 20)
    assert spawns == {"postgres": 3, "worker1": 1}
    assert exits == {"postgres": "terminated by SIGKILL; not expected"}
    assert history(stack, 30) == ({}, {})  # not started yet: nothing of earlier ones


def test_the_table_has_a_line_a_piece():
    text = table(
        [
            Piece("postgres", "RUNNING", 24, 3725.4, 2, "terminated by SIGKILL; not expected"),
            Piece("worker1", "BACKOFF", 0, None, 5, "exit status 1; not expected"),
        ]
    )
    lines = text.splitlines()
    assert lines[0].split() == ["piece", "state", "pid", "uptime", "restarts", "last", "exit"]
    assert lines[1].split()[:5] == ["postgres", "RUNNING", "24", "1:02:05", "2"]
    assert lines[1].endswith("terminated by SIGKILL; not expected")
    assert lines[2].split()[:5] == ["worker1", "BACKOFF", "-", "-", "5"]
