"""The one door to MLflow: runs bound to their id, every failure one line naming the store."""

import json
from pathlib import Path

import mlflow
import pandas as pd
import pytest

from mnist.errors import MnistError
from mnist.tracking import Run, client


def test_a_run_logs_everything_through_its_own_id(store):
    run = Run.start("door", "a-run", {"extra": "tag"})
    run.log_params({"epochs": "2"})
    run.set_tags({"dataset_digest": "abc"})
    run.log_metrics({"loss": 0.5}, step=1)
    run.log_json({"a": 1}, "report.json")
    run.log_frame(pd.DataFrame({"x": [1, 2]}), "table.csv")
    run.end(True)
    logged = client().get_run(run.run_id)
    assert logged.info.status == "FINISHED" and logged.info.experiment_id == run.experiment_id
    assert logged.data.params == {"epochs": "2"}
    assert logged.data.tags["extra"] == "tag" and logged.data.tags["dataset_digest"] == "abc"
    assert logged.data.tags["git_commit"] == run.code_version
    assert logged.data.metrics == {"loss": 0.5}
    report = Path(client().download_artifacts(run.run_id, "report.json"))
    assert json.loads(report.read_text()) == {"a": 1}
    assert (Path(run.artifact_location("table.csv"))).read_text() == "x\n1\n2\n"
    assert run.run_id in run.link() and store in run.link()


def test_an_mlflow_failure_is_one_line_naming_the_store(store):
    run = Run.start("door", "deleted", {})
    client().delete_run(run.run_id)
    with pytest.raises(MnistError) as err:
        run.log_params({"a": "1"})
    message = str(err.value)
    assert message.startswith(f"MLflow at {store}: ") and "\n" not in message
    with pytest.raises(MnistError, match="MLflow at"):
        run.end(False)


def test_an_unreachable_server_is_one_line(monkeypatch):
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MNIST_MLFLOW_RESTART_SECONDS", "0")  # no wait for a restart
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    try:
        with pytest.raises(MnistError) as err:
            Run.start("door", "nowhere", {})
    finally:
        mlflow.set_tracking_uri(None)
    assert str(err.value) == "cannot reach the MLflow tracking server at http://127.0.0.1:9"


SHIPPED_LOADERS = {  # every mnist_pyfunc.py that logged models carry: never remove one
    "bdaaf96a443c3d8c45ed4833cc313c29ba8b9785168dab4729aa5e3d80d21926",
    "50b2491f960221e180ecf0f7adec1704d1e39c28f4def673c0422aa4cd15d537",
}


def test_models_logged_with_any_shipped_loader_still_load():
    """Editing mnist/mnist_pyfunc.py must keep the old digest in `_EARLIER_LOADERS` (and add
    the new one above), or every model logged before the edit would be refused."""
    from mnist.tracking import PYFUNC_LOADER_DIGESTS

    assert SHIPPED_LOADERS <= PYFUNC_LOADER_DIGESTS
