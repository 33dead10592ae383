"""The one place that talks to MLflow: runs, params, metrics, artifacts and the logged model.

Every call names its run id explicitly (no reliance on MLflow's thread-local "active run"),
so Prefect may run tasks in any thread. The store is MLflow's default (`sqlite:///mlflow.db`,
artifacts in `./mlruns`) unless `MLFLOW_TRACKING_URI` says otherwise.
"""

from __future__ import annotations

import json
import subprocess
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlparse

import keras
import matplotlib.pyplot as plt
import mlflow
import numpy as np
import pandas as pd
from matplotlib.figure import Figure
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException
from mlflow.models import infer_signature

import mnist
from mnist.errors import MnistError

MODEL_ARTIFACT = "model"
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")


class NotFound(MnistError):
    """The experiment, model, version or alias asked for does not exist."""


def mlflow_call(fn, *args, missing: str | None = None, **kwargs):
    """Run an MLflow call, turning its errors (an unreachable server included) into one line;
    `missing` is the message for something that does not exist."""
    uri = mlflow.get_tracking_uri()
    try:
        return fn(*args, **kwargs)
    except MlflowException as exc:
        if missing and exc.error_code in NOT_FOUND:
            raise NotFound(missing) from exc
        message = exc.message.splitlines()[0] if exc.message else str(exc)
        if "Max retries exceeded" in message or "Failed to establish" in message:
            raise MnistError(f"cannot reach the MLflow tracking server at {uri}") from exc
        raise MnistError(f"MLflow at {uri}: {message}") from exc
    except OSError as exc:  # requests' ConnectionError is an OSError
        raise MnistError(f"cannot reach the MLflow tracking server at {uri}") from exc


@dataclass(frozen=True)
class RunInfo:
    run_id: str
    experiment_id: str
    artifact_uri: str
    code_version: str


def client() -> MlflowClient:
    return MlflowClient()


def code_version() -> str:
    """The git commit of this checkout (with `-dirty` for uncommitted changes), else the
    package version."""
    root = Path(mnist.__file__).resolve().parent.parent
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=root,
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return f"mnist-pipeline=={mnist.__version__}"
    return f"{commit}-dirty" if dirty else commit


def start_run(experiment: str, run_name: str, tags: dict[str, str]) -> RunInfo:
    """Create a run in `experiment` (made if missing), tagged with the code version."""
    exp = mlflow_call(mlflow.set_experiment, experiment)
    commit = code_version()
    run = mlflow_call(
        client().create_run,
        exp.experiment_id,
        run_name=run_name,
        tags={"git_commit": commit, "mlflow.source.git.commit": commit, **tags},
    )
    return RunInfo(run.info.run_id, exp.experiment_id, run.info.artifact_uri, commit)


def end_run(run_id: str, ok: bool) -> None:
    client().set_terminated(run_id, "FINISHED" if ok else "FAILED")


def log_params(run_id: str, params: dict[str, str]) -> None:
    client().log_batch(run_id, params=[mlflow.entities.Param(k, v) for k, v in params.items()])


def set_tags(run_id: str, tags: dict[str, str]) -> None:
    client().log_batch(run_id, tags=[mlflow.entities.RunTag(k, v) for k, v in tags.items()])


def log_metrics(run_id: str, metrics: dict[str, float], step: int | None = None) -> None:
    mlflow.log_metrics(metrics, step=step, run_id=run_id, synchronous=True)


def log_json(run_id: str, data: dict, artifact_file: str) -> None:
    client().log_text(run_id, json.dumps(data, indent=2, default=str), artifact_file)


def log_frame(run_id: str, frame: pd.DataFrame, artifact_file: str) -> None:
    client().log_text(run_id, frame.to_csv(index=False), artifact_file)


def log_figures(run_id: str, figures: dict[str, Figure], directory: str = "plots") -> None:
    c = client()
    for name, fig in figures.items():
        c.log_figure(run_id, fig, f"{directory}/{name}", save_kwargs={"dpi": 110})
        plt.close(fig)


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs seconds and lists TensorFlow twice)."""
    import tensorflow as tf

    return [
        f"tensorflow-cpu=={tf.__version__}; sys_platform == 'linux'",
        f"tensorflow=={tf.__version__}; sys_platform != 'linux'",
        f"keras=={keras.__version__}",
        f"numpy=={np.__version__}",
    ]


def log_model(run_id: str, model: keras.Model, example: np.ndarray) -> str:
    """Log a raw-pixel model under `model` with a signature; returns `runs:/ID/model`."""
    signature = infer_signature(example.astype(np.float32), np.asarray(model(example)))
    mlflow.tensorflow.log_model(
        model,
        name=MODEL_ARTIFACT,
        run_id=run_id,
        signature=signature,
        pip_requirements=pip_requirements(),
    )
    return f"runs:/{run_id}/{MODEL_ARTIFACT}"


def artifact_location(run: RunInfo, path: str = "") -> str:
    """Where a run's artifact lives: a local path for a file store, else its URI."""
    uri = f"{run.artifact_uri.rstrip('/')}/{path}" if path else run.artifact_uri
    parsed = urlparse(uri)
    return parsed.path if parsed.scheme in ("", "file") else uri


def run_link(run: RunInfo) -> str:
    """A link to the run in the MLflow UI when the store is a server, else how to open one."""
    uri = mlflow.get_tracking_uri()
    if uri.startswith(("http://", "https://")):
        return f"{uri.rstrip('/')}/#/experiments/{run.experiment_id}/runs/{run.run_id}"
    return (
        f"`mlflow ui --backend-store-uri {uri}`, experiment {run.experiment_id}, run {run.run_id}"
    )
