"""Wrong store addresses, fed to real `mnist` commands as a new user would: a registry, a
training, a data, a serving and a prediction command each end within 10 s in one line that
names the setting, the value (no password) and what to do; exit status 1, no traceback, and
nothing from TensorFlow before it.

The commands run at once (each is a process of its own, most of its time Python's start-up),
before the assertions, so that the module takes seconds, not a minute.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest
from PIL import Image

from tests.servers import free_port

pytestmark = pytest.mark.slow  # processes of their own: not the unit tier

BIN = Path(sys.executable).parent
BOUND_SECONDS = 10.0
TRACKING, DATASTORE, PREFECT = "MLFLOW_TRACKING_URI", "MNIST_DATASTORE", "PREFECT_API_URL"


@dataclass(frozen=True)
class Case:
    argv: tuple[str, ...]
    setting: str
    value: str
    says: str  # a piece of the line


def _wrong(refused: int, silent: int) -> dict[str, list[tuple[str, str]]]:
    """Per setting, each kind of wrong value and a piece of what the line says about it."""
    db = [
        ("mysql://admin:secret@127.0.0.1/x", "no driver for mysql"),
        ("postgresql+nonexistent://u@127.0.0.1/x", "no driver for postgresql+nonexistent"),
        (f"postgresql://nobody@127.0.0.1:{refused}/x", "refuses connections"),
    ]
    return {
        TRACKING: [
            ("htp://localhost:5000", "unknown scheme 'htp' (did you mean http?)"),
            ("mlruns", "use a database such as sqlite:///mlflow.db"),
            *db,
            (f"http://127.0.0.1:{silent}", "did not answer within 2 s"),
        ],
        DATASTORE: [
            ("sqlte:///data.db", "unknown scheme 'sqlte' (did you mean sqlite?)"),
            ("data.db", "use sqlite:///data.db"),
            *db,
            (f"postgresql://u@127.0.0.1:{silent}/x", "did not answer within 2 s"),
        ],
        PREFECT: [
            ("htp://localhost:4200/api", "unknown scheme 'htp'"),
            (f"http://127.0.0.1:{refused}/api", "refuses connections"),
            (f"http://127.0.0.1:{silent}/api", "did not answer within 2 s"),
        ],
    }


def _cases(refused: int, silent: int) -> list[Case]:
    """Every wrong MLflow address for `mnist registry list`; for the training, data and serving
    commands each kind of fault once or more, on each setting they take (the form's rules are
    the same function whatever the command: `tests/unit/mnist/test_addresses.py`)."""
    wrong = _wrong(refused, silent)
    train, data, serve = ("train", "--profile", "fast"), ("data", "list"), ("serve", "--port", "0")
    chosen = [
        (("registry", "list"), TRACKING, range(6)),
        (train, TRACKING, (0, 1, 3, 4)),
        (train, PREFECT, (0, 1)),
        (data, DATASTORE, (0, 1, 2, 4)),
        (serve, TRACKING, (1, 5)),
        (serve, DATASTORE, (3, 4)),
    ]
    cases = [Case(argv, s, *wrong[s][i]) for argv, s, picks in chosen for i in picks]
    model = ("predict", "--model", "models:/mnist-cnn@champion", "digit.png")
    return [*cases, Case(model, TRACKING, *wrong[TRACKING][0])]


def _ids() -> list[str]:
    """A name per case, as `train-MLFLOW_TRACKING_URI-3`."""
    seen: dict[tuple[str, str], int] = {}
    names = []
    for case in _cases(1, 2):
        key = (case.argv[0], case.setting)
        seen[key] = seen.get(key, 0) + 1
        names.append(f"{key[0]}-{key[1]}-{seen[key]}")
    return names


@dataclass(frozen=True)
class Outcome:
    returncode: int
    stdout: str
    stderr: str
    seconds: float


@pytest.fixture(scope="module")
def ports() -> Iterator[tuple[int, int]]:
    """A closed port (refuses) and a silent one: a listening socket whose one-place backlog
    is taken, so that the kernel drops every further handshake."""
    with socket.socket() as server, socket.socket() as filler:
        server.bind(("127.0.0.1", 0))
        server.listen(0)
        filler.connect(server.getsockname())
        yield free_port(), server.getsockname()[1]


@pytest.fixture(scope="module")
def outcomes(ports, tmp_path_factory) -> dict[Case, Outcome]:
    """Every case's command, four at a time (more only queue for the two cores); a silent host
    gets 2 s, leaving most of the 10 s bound to start-up on a loaded machine."""
    cwd = tmp_path_factory.mktemp("wrong")
    Image.new("L", (28, 28), 200).save(cwd / "digit.png")  # a real input: the model fails
    base = {k: v for k, v in os.environ.items() if k not in (TRACKING, DATASTORE, PREFECT)}
    base |= {TRACKING: f"sqlite:///{cwd / 'mlflow.db'}", "MNIST_CONNECT_SECONDS": "2"}

    def run(case: Case) -> Outcome:
        started = time.monotonic()
        proc = subprocess.run(
            [str(BIN / "mnist"), *case.argv],
            env={**base, case.setting: case.value},
            cwd=cwd,
            capture_output=True,
            text=True,
            timeout=120,
        )
        took = time.monotonic() - started
        return Outcome(proc.returncode, proc.stdout, proc.stderr, took)

    cases = _cases(*ports)
    with ThreadPoolExecutor(4) as pool:
        return dict(zip(cases, pool.map(run, cases), strict=True))


@pytest.mark.parametrize("index", range(len(_ids())), ids=_ids())
def test_a_wrong_address_ends_in_one_line_within_10_s(outcomes, ports, index):
    case = _cases(*ports)[index]
    out = outcomes[case]
    assert out.returncode == 1, (case, out)
    assert "Traceback" not in out.stdout + out.stderr
    (line,) = out.stderr.strip().splitlines()  # nothing before it: no absl, no Prefect
    assert line.startswith(f"mnist: error: {case.setting}="), line
    assert case.says in line and "secret" not in line, line
    assert out.seconds < BOUND_SECONDS, (case, out.seconds)
