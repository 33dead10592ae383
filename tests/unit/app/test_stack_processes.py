"""Which processes belong to a stack: those that inherited its MNIST_STACK_DIR, less the caller
and its ancestors (a `make stack-up` started with the variable carries it too)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

FIND = (
    "from app.stack.config import Stack; from app.stack.processes import members; "
    "print(members(Stack.from_env()))"
)


def test_the_callers_ancestors_are_not_members_but_a_sibling_is(tmp_path: Path):
    env = {**os.environ, "MNIST_STACK_DIR": str(tmp_path)}
    sibling = subprocess.Popen(["sleep", "30"], env=env)
    try:
        # the shell (the caller's parent) carries the variable; the sleep is the stack's
        out = subprocess.run(
            ["sh", "-c", f'"{sys.executable}" -c "{FIND}"; true'],
            env=env,
            capture_output=True,
            text=True,
            check=True,
            cwd=Path(__file__).resolve().parents[3],
        ).stdout
    finally:
        sibling.kill()
        sibling.wait()
    assert out.strip() == f"[{sibling.pid}]"
