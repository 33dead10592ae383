"""`mnist.tracking.store`: every MLflow failure is one line naming the store, and a server that
refuses connections (restarting) is waited for, told by the exception's type."""

from __future__ import annotations

from collections.abc import Iterator

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.protos.databricks_pb2 import TEMPORARILY_UNAVAILABLE

from mnist import outages
from mnist.errors import MnistError
from mnist.tracking import Run, call, client
from mnist.tracking import store as tracking_store
from tests.servers import free_port


@pytest.fixture
def nowhere(monkeypatch) -> Iterator[str]:
    """A tracking URI where nothing listens; MLflow does not retry, nor do we wait."""
    uri = f"http://127.0.0.1:{free_port()}"
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MNIST_OUTAGE_SECONDS", "0")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    mlflow.set_tracking_uri(uri)
    yield uri
    mlflow.set_tracking_uri(None)


def _refusal(uri: str) -> MlflowException:
    """What MLflow raises for a refused connection, for real."""
    with pytest.raises(MlflowException) as err:
        MlflowClient(uri).search_experiments()
    return err.value


def test_an_mlflow_failure_is_one_line_naming_the_store(store):
    run = Run.start("door", "deleted", {})
    client().delete_run(run.run_id)
    with pytest.raises(MnistError) as err:
        run.log_params({"a": "1"})
    message = str(err.value)
    assert message.startswith(f"MLflow at {store}: ") and "\n" not in message
    with pytest.raises(MnistError, match="MLflow at"):
        run.end(False)


def test_an_unreachable_server_is_one_line(nowhere):
    with pytest.raises(MnistError) as err:
        Run.start("door", "nowhere", {})
    assert str(err.value) == (
        f"the MLflow tracking server at {nowhere} did not answer; check that it is up and that "
        "MLFLOW_TRACKING_URI names it (MNIST_OUTAGE_SECONDS sets how long a run waits for a store)"
    )


def test_a_refused_connection_is_told_by_its_type_not_its_text(nowhere):
    refusal = _refusal(nowhere)
    assert tracking_store._unreachable(refusal)
    echoed = MlflowException(f"the server said: {refusal.message}")  # a message, no cause
    assert not tracking_store._unreachable(echoed)


def test_other_failures_are_not_sent_again(nowhere):
    tries = []

    def failing() -> None:
        tries.append(1)
        raise MlflowException("Connection refused, said the server's artifact store")

    with pytest.raises(MnistError, match=f"^MLflow at {nowhere}: Connection refused"):
        call(failing)
    assert len(tries) == 1


def test_a_local_error_beside_a_remote_store_is_not_the_server_away(nowhere):
    def download() -> None:
        raise PermissionError(13, "Permission denied")

    with pytest.raises(MnistError) as err:
        call(download)
    assert str(err.value) == f"MLflow at {nowhere}: Permission denied"
    assert not isinstance(err.value, outages.StoreAway)


def test_a_full_or_read_only_local_store_is_named_as_such(store):
    def log() -> None:  # what MLflow's SQL store raises for SQLite's "disk is full"
        raise MlflowException("(sqlite3.OperationalError) disk is full", TEMPORARILY_UNAVAILABLE)

    with pytest.raises(MnistError) as err:
        call(log)
    assert str(err.value) == f"MLflow at {store}: (sqlite3.OperationalError) disk is full"
    assert not isinstance(err.value, outages.StoreAway)
