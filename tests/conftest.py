"""Shared fixtures: the real MNIST, a real Prefect API, a temporary SQLite MLflow store."""

from __future__ import annotations

# isort: off
import mnist.env  # noqa: F401  (first: env defaults before Prefect, MLflow, TensorFlow)

# isort: on
import os
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import mlflow
import numpy
import pytest

from mnist import data
from tests.servers import (
    Postgres,
    mlflow_spec,
    prefect_spec,
    server_url,
    start_server,
    start_servers,
    stop_server,
)

ROOT = Path(__file__).resolve().parent.parent


def _process_settings() -> None:
    """Settings of each test process, for it and all it starts; a value already set wins."""
    if "PYTEST_XDIST_WORKER" in os.environ:
        # Three test processes share two cores (ADR 0093): one TensorFlow thread each, so that
        # their trainings leave the stack's restarting servers their share of the CPU (ADR 0095).
        # Before TensorFlow loads: nothing imported above loads it.
        for threads in ("TF_NUM_INTRAOP_THREADS", "TF_NUM_INTEROP_THREADS"):
            os.environ.setdefault(threads, "1")
    # pytest-randomly loaded NumPy before `mnist.env` could set NUMPY_MADVISE_HUGEPAGE, which
    # NumPy reads when it loads: the same setting for this process's own arrays (ADR 0099).
    numpy._core.multiarray._set_madvise_hugepage(bool(int(os.environ["NUMPY_MADVISE_HUGEPAGE"])))


_process_settings()


SHARED = "full_run"
"""The group of every module that uses the suite's one full training (`full_run`, a session
fixture): one test process runs them all, so that it trains once, not once per process."""

LONGEST_FIRST = (
    "tests/system/test_stack.py",
    SHARED,
    "tests/system/test_loop.py",
    "tests/system/test_faults.py",
    "tests/integration/test_stack_faults.py",
    "tests/integration/test_added_data.py",
    "tests/integration/test_dask_training.py",
    "tests/integration/test_datastore_load.py",
)
"""The groups that take minutes (`--durations`), started first."""


def _group(module: list[pytest.Item]) -> str:
    return SHARED if any("full_run" in item.fixturenames for item in module) else ""


@pytest.hookimpl(wrapper=True)
def pytest_collection_modifyitems(items: list[pytest.Item]) -> Iterator[None]:
    """Each module a group of its own, or of `SHARED` (`make test` runs three processes,
    pytest-xdist's `--dist loadgroup`, each taking a whole group at a time); then, after
    pytest-randomly's shuffle, the longest groups first (a stable sort), so that none is
    started last and leaves one process working alone at the end."""
    modules: dict[str, list[pytest.Item]] = {}
    for item in items:
        modules.setdefault(item.nodeid.split("::")[0], []).append(item)
    group = {name: _group(module) or name for name, module in modules.items()}
    for item in items:  # before xdist reads the marks (it names each test after its group)
        item.add_marker(pytest.mark.xdist_group(group[item.nodeid.split("::")[0]]))
    result = yield
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(group[item.nodeid.split("::")[0]], len(rank)))
    return result


def pytest_xdist_node_collection_finished(node, ids: list[str]) -> None:
    """Stop at once when pytest-xdist's loadgroup names no test after its group (it writes
    the group into the node id): each test would go its own way, a module's fixtures (a
    stack, servers) made in every process."""
    if node.config.getvalue("dist") == "loadgroup" and ids and "@" not in ids[0]:
        pytest.exit("pytest-xdist's loadgroup grouped nothing: see pyproject.toml", 3)


def mnist_dir() -> Path:
    """MNIST_DATA_DIR, else ../shared/data/mnist beside the checkout, else the download cache."""
    env = os.environ.get("MNIST_DATA_DIR")
    if env:
        # Absolute, for fixtures that change directory and for the commands they start.
        os.environ["MNIST_DATA_DIR"] = str(Path(env).resolve())
        return Path(env).resolve()
    shared = ROOT.parent / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else data.default_cache_dir()


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    return mnist_dir()


@pytest.fixture(scope="session")
def mnist_data(mnist_path) -> data.Dataset:
    return data.load(mnist_path)


@contextmanager
def tracking_store(path: Path) -> Iterator[str]:
    """MLflow pointed at a fresh SQLite store in `path`, working there (artifacts in ./mlruns),
    until the block ends; then everything as it was."""
    with pytest.MonkeyPatch.context() as patch:
        patch.chdir(path)
        uri = f"sqlite:///{path / 'mlflow.db'}"
        patch.setenv("MLFLOW_TRACKING_URI", uri)
        mlflow.set_tracking_uri(uri)
        try:
            yield uri
        finally:
            mlflow.set_tracking_uri(None)  # before the patch restores the variable


@pytest.fixture
def store(tmp_path) -> Iterator[str]:
    """A fresh SQLite MLflow store for one test."""
    with tracking_store(tmp_path) as uri:
        yield uri


@pytest.fixture(scope="session")
def workdir(tmp_path_factory) -> Path:
    """A scratch working directory with its own SQLite MLflow store (artifacts in ./mlruns)."""
    path = tmp_path_factory.mktemp("work")
    old_cwd, old_uri = Path.cwd(), os.environ.get("MLFLOW_TRACKING_URI")
    os.chdir(path)
    uri = f"sqlite:///{path / 'mlflow.db'}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    mlflow.set_tracking_uri(uri)
    yield path
    os.chdir(old_cwd)
    if old_uri is None:
        os.environ.pop("MLFLOW_TRACKING_URI", None)
    else:
        os.environ["MLFLOW_TRACKING_URI"] = old_uri
    mlflow.set_tracking_uri(None)


@pytest.fixture(scope="session")
def prefect_api():
    """A real (temporary) Prefect API for the whole session."""
    from prefect.testing.utilities import prefect_test_harness

    with prefect_test_harness(server_startup_timeout=120):
        yield


@pytest.fixture(scope="session")
def prefect_api_url(prefect_api) -> str:
    """The session's Prefect API, for `mnist` commands run as subprocesses that need a Prefect
    API but are not about the temporary one (which takes seconds to start in each)."""
    from prefect.settings import PREFECT_API_URL

    return str(PREFECT_API_URL.value())


@pytest.fixture(scope="session")
def full_run(prefect_api, workdir, mnist_path):
    """The suite's one training on the full real MNIST, with the default model."""
    from flows.training import training_flow
    from mnist.settings import TrainConfig

    config = TrainConfig(data_dir=mnist_path, epochs=2, experiment="full")
    return config, training_flow(config)


@pytest.fixture(scope="module")
def mlflow_server(tmp_path_factory):
    """`mlflow server` on a free loopback port, SQLite backend, one worker."""
    spec = mlflow_spec(tmp_path_factory.mktemp("mlflow-server"))
    proc = start_server(*spec)
    yield server_url(spec)
    stop_server(proc)


@pytest.fixture(scope="module")
def prefect_server(tmp_path_factory):
    """`prefect server start` on a free loopback port with its own home and database."""
    spec = prefect_spec(tmp_path_factory.mktemp("prefect-server"))
    proc = start_server(*spec)
    yield f"{server_url(spec)}/api", Path(spec[3]["PREFECT_HOME"])
    stop_server(proc)


@pytest.fixture(scope="module")
def servers(tmp_path_factory):
    """`prefect_server` and `mlflow_server` started at once (their start-ups overlap):
    ((Prefect API URL, its home), MLflow URL)."""
    prefect = prefect_spec(tmp_path_factory.mktemp("prefect-server"))
    mlflow = mlflow_spec(tmp_path_factory.mktemp("mlflow-server"))
    procs = start_servers(prefect, mlflow)
    yield (f"{server_url(prefect)}/api", Path(prefect[3]["PREFECT_HOME"])), server_url(mlflow)
    for proc in procs:
        stop_server(proc)


@pytest.fixture(scope="session")
def postgres() -> Iterator[Postgres]:
    """A real PostgreSQL server for the session (Debian's package, on a free loopback port),
    started by the stack's launcher as a child of this process: it dies with pytest."""
    server = Postgres()
    yield server
    server.close()
