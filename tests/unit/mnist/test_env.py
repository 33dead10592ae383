"""`mnist.env`: process-wide defaults reach the libraries that read them when they load."""

import os
import subprocess
import sys

import numpy


def _numpy_huge_pages(env: dict[str, str]) -> str:
    """Whether NumPy in a new process that imports `mnist.env` first asks for huge pages."""
    code = "import mnist.env, numpy; print(numpy._core.multiarray._get_madvise_hugepage())"
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


def test_numpy_asks_for_no_huge_pages_by_default():
    env = {k: v for k, v in os.environ.items() if k != "NUMPY_MADVISE_HUGEPAGE"}
    assert _numpy_huge_pages(env) == "False"


def test_a_users_numpy_madvise_hugepage_wins():
    assert _numpy_huge_pages({**os.environ, "NUMPY_MADVISE_HUGEPAGE": "1"}) == "True"


def test_the_test_processes_numpy_asks_for_no_huge_pages_either():
    """pytest-randomly loaded NumPy before `mnist.env`: the conftest passed the setting on."""
    assert not numpy._core.multiarray._get_madvise_hugepage()
