"""The training flow for real: Prefect API, SQLite MLflow store, real MNIST."""

import json
from pathlib import Path

import mlflow
import numpy as np
import onnxruntime
import pytest
from mlflow import MlflowClient

from flows.training import training_flow
from mnist.settings import TrainConfig
from mnist.validation import ValidationError

ARTIFACTS = {
    "history.csv",
    "validation_report.json",
    "classification_report.csv",
    "plots/training_curves.png",
    "plots/predictions.png",
    "plots/confusion_matrix.png",
}


def _report(client, run_id):
    return json.loads(Path(client.download_artifacts(run_id, "validation_report.json")).read_text())


def _artifacts(client, run_id, path=None):
    out = set()
    for item in client.list_artifacts(run_id, path):
        out |= _artifacts(client, run_id, item.path) if item.is_dir else {item.path}
    return out


@pytest.mark.slow
def test_full_mnist_default_model_reaches_98_5(full_run):
    config, result = full_run
    assert config.model == "cnn"
    assert result.test_samples == 10000
    assert result.test_accuracy >= 0.985


@pytest.mark.slow
def test_run_is_complete_in_mlflow(full_run, mnist_data):
    config, result = full_run
    client = MlflowClient()
    run = client.get_run(result.run_id)
    assert run.info.status == "FINISHED"
    assert run.data.params == config.params()
    assert run.data.tags["dataset_digest"] == mnist_data.digest
    assert len(run.data.tags["git_commit"]) >= 7
    assert run.data.tags["prefect.flow_run_id"]
    for metric in ("loss", "accuracy", "val_loss", "val_accuracy"):
        history = client.get_metric_history(result.run_id, metric)
        assert [m.step for m in history] == [1, 2]
    assert run.data.metrics["test_accuracy"] == pytest.approx(result.test_accuracy)
    assert run.data.metrics["test_samples"] == 10000
    assert run.data.metrics["validation.train.nan"] == 0
    assert _artifacts(client, result.run_id) >= ARTIFACTS
    report = _report(client, result.run_id)
    expected_val = sum(round(n * 0.1) for n in np.bincount(mnist_data.train.labels))
    assert report["problems"] == 0 and report["splits"]["val"]["samples"] == expected_val


@pytest.mark.slow
def test_logged_model_predicts_raw_pixels(full_run, mnist_data):
    _, result = full_run
    raw = mnist_data.test.images[:500].astype(np.float32)
    labels = mnist_data.test.labels[:500]
    native = mlflow.tensorflow.load_model(result.model_uri)
    pyfunc = mlflow.pyfunc.load_model(result.model_uri)
    # pyfunc answers through the loader shipped with the model, not MLflow's `Model.predict`
    assert pyfunc.metadata.flavors["python_function"]["loader_module"] == "mnist_pyfunc"
    # ... which runs the model's ONNX copy when it has one, as every logged model now does
    assert isinstance(pyfunc.get_raw_model(), onnxruntime.InferenceSession)
    p_native = np.asarray(native(raw))
    p_pyfunc = np.asarray(pyfunc.predict(raw))
    np.testing.assert_allclose(p_native, p_pyfunc, rtol=1e-4, atol=1e-5)
    assert np.mean(p_native.argmax(axis=1) == labels) >= 0.98


def _npz(path, mnist_data, n_train=600, n_test=200):
    x_train = mnist_data.train.images[:n_train].astype(np.float32)
    x_train[[3, 50], 10, 10] = np.nan
    x_train[70, 0, 0] = np.inf
    x_test = mnist_data.test.images[:n_test].astype(np.float32)
    x_test[5, 14, 14] = np.nan
    np.savez(
        path,
        x_train=x_train,
        y_train=mnist_data.train.labels[:n_train],
        x_test=x_test,
        y_test=mnist_data.test.labels[:n_test],
    )
    return path


def test_nan_fail_policy_stops_the_run_and_logs_the_report(prefect_api, workdir, mnist_data):
    path = _npz(workdir / "dirty.npz", mnist_data)
    with pytest.raises(ValidationError, match="NaN pixel") as err:
        training_flow(TrainConfig(data_dir=path, experiment="dirty-fail", model="small"))
    assert str(path) in str(err.value)
    client = MlflowClient()
    exp = client.get_experiment_by_name("dirty-fail")
    (run,) = client.search_runs([exp.experiment_id])
    assert run.info.status == "FAILED"
    assert run.data.metrics["validation.test.nan"] == 1
    assert (
        run.data.metrics["validation.train.bad_samples"]
        + run.data.metrics["validation.val.bad_samples"]
        == 3
    )
    report = _report(client, run.info.run_id)
    assert report["policy"] == "fail" and report["problems"] == 4


def test_nan_drop_policy_trains_on_clean_samples(prefect_api, workdir, mnist_data):
    path = _npz(workdir / "dirty-drop.npz", mnist_data)
    config = TrainConfig(
        data_dir=path,
        experiment="dirty-drop",
        model="small",
        epochs=1,
        register_model=False,
        nan_policy="drop",
    )
    result = training_flow(config)
    assert result.test_samples == 199
    run = MlflowClient().get_run(result.run_id)
    assert run.data.metrics["test_samples"] == 199
    assert run.data.metrics["validation.test.dropped"] == 1


def test_a_run_whose_flow_run_ended_elsewhere_is_closed_from_here(prefect_api, store):
    """A machine died mid-run: its Prefect flow run is CRASHED (the server's zombie
    automation), its MLflow run still RUNNING, and its pid means nothing here. The next run,
    on any machine, closes it."""
    from prefect import flow
    from prefect.client.orchestration import get_client
    from prefect.states import Crashed

    from flows.stale_runs import close_stale_runs
    from mnist.tracking import Run

    @flow(name="elsewhere")
    def elsewhere() -> None:
        pass

    with get_client(sync_client=True) as client:
        crashed = client.create_flow_run(elsewhere)
        client.set_flow_run_state(crashed.id, Crashed(message="no heartbeat"), force=True)
        alive = client.create_flow_run(elsewhere)  # still scheduled: not over, not touched
    owner = {"mnist.host": "another-machine", "mnist.pid": "1"}
    dead = Run.start("elsewhere", "dead", {**owner, "prefect.flow_run_id": str(crashed.id)})
    live = Run.start("elsewhere", "live", {**owner, "prefect.flow_run_id": str(alive.id)})
    stale, _ = close_stale_runs()
    assert [s.run_id for s in stale] == [dead.run_id]
    runs = MlflowClient()
    assert runs.get_run(dead.run_id).info.status == "FAILED"
    assert "flow run ended CRASHED" in runs.get_run(dead.run_id).data.tags["mnist.failure"]
    assert runs.get_run(live.run_id).info.status == "RUNNING"
