"""Shared fixtures: the real MNIST, a real Prefect API, a temporary SQLite MLflow store."""

from __future__ import annotations

import os
from pathlib import Path

from mnist.env import apply_defaults

apply_defaults()

import mlflow  # noqa: E402
import pytest  # noqa: E402

from mnist import data  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent


def mnist_dir() -> Path:
    """MNIST_DATA_DIR, else ../shared/data/mnist beside the checkout, else the download cache."""
    env = os.environ.get("MNIST_DATA_DIR")
    if env:
        return Path(env)
    shared = ROOT.parent / "shared" / "data" / "mnist"
    return shared if shared.is_dir() else data.default_cache_dir()


@pytest.fixture(scope="session")
def mnist_path() -> Path:
    return mnist_dir()


@pytest.fixture(scope="session")
def mnist_data(mnist_path) -> data.Dataset:
    return data.load(mnist_path)


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
def full_run(prefect_api, workdir, mnist_path):
    """The suite's one training on the full real MNIST, with the default model."""
    from flows.training import training_flow
    from mnist.config import TrainConfig

    config = TrainConfig(data_dir=mnist_path, epochs=2, experiment="full")
    return config, training_flow(config)
