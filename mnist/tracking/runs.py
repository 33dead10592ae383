"""MLflow runs: `Run`, bound to its run id, through which a flow and its tasks log everything,
and what a run records about itself (the code version, its datasets, its model).

A `Run` is bound to its id, so Prefect may run tasks in any thread (MLflow's "active run" is
thread-local). Keras and TensorFlow load only when a model is logged.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import mlflow
from mlflow.entities import Param, RunTag

import mnist
from mnist.errors import MnistError
from mnist.tracking.model_files import MODEL_ARTIFACT, KerasFlavour
from mnist.tracking.stale import owner
from mnist.tracking.store import call, client, store_uri

if TYPE_CHECKING:
    import keras
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure


def _lost_a_dataset_race(exc: MnistError) -> bool:
    """Whether MLflow refused a dataset that another run inserted at the same moment."""
    text = str(exc.__cause__ or exc)
    return "datasets" in text and any(
        unique in text for unique in ("UNIQUE constraint failed", "duplicate key value")
    )


def code_version() -> str:
    """The git commit of this checkout, with `-dirty.` and a digest of the uncommitted changes
    to tracked files when there are any, else the package version."""
    root = Path(mnist.__file__).resolve().parent.parent

    def git(*args: str) -> str:
        return subprocess.run(
            ["git", *args], cwd=root, capture_output=True, text=True, check=True
        ).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        diff = git("diff", "HEAD", "--no-ext-diff", "--binary")
    except (OSError, subprocess.CalledProcessError):
        return f"mnist-pipeline=={mnist.__version__}"
    if not diff:
        return commit
    return f"{commit}-dirty.{hashlib.sha256(diff.encode()).hexdigest()[:12]}"


def experiment_id(name: str) -> str:
    """The id of experiment `name`, created if missing (also when another client races us)."""
    exp = call(mlflow.get_experiment_by_name, name)
    if exp is not None:
        return exp.experiment_id
    try:
        return call(client().create_experiment, name)
    except MnistError:  # created concurrently by another client, or a real failure
        if (exp := call(mlflow.get_experiment_by_name, name)) is None:
            raise
        return exp.experiment_id


@dataclass(frozen=True)
class Input:
    """A dataset a run trained or was judged on, for MLflow's dataset tracking."""

    name: str
    images: np.ndarray
    labels: np.ndarray
    source: str  # a file, or the added-data store's URL (no password)
    digest: str  # SHA-256 of the arrays, in full
    context: str  # "training" or "evaluation"
    batches: tuple[int, ...] = ()  # of the added-data store


@dataclass(frozen=True)
class LoggedModel:
    """A logged model's URI (`models:/m-ID`) and the tags of its ONNX copy."""

    uri: str
    tags: dict[str, str]


@dataclass(frozen=True)
class Run:
    """An MLflow run, bound to its id: everything a flow and its tasks log goes through it."""

    run_id: str
    experiment_id: str
    artifact_uri: str
    code_version: str

    @classmethod
    def start(cls, experiment: str, name: str, tags: dict[str, str]) -> Run:
        """Create a run in `experiment` (made if missing), tagged with the code version and
        with the process that owns it (so that `stale_runs` can tell when it died)."""
        exp_id = experiment_id(experiment)
        commit = code_version()
        tags = {"git_commit": commit, "mlflow.source.git.commit": commit, **owner(), **tags}
        run = call(client().create_run, exp_id, run_name=name, tags=tags)
        return cls(run.info.run_id, exp_id, run.info.artifact_uri or "", commit)

    @classmethod
    def existing(cls, run_id: str) -> Run:
        """A run already made (a sweep's trial, say), to log more to it."""
        run = call(client().get_run, run_id, missing=f"MLflow run {run_id}")
        tags = run.data.tags
        return cls(
            run_id, run.info.experiment_id, run.info.artifact_uri or "", tags.get("git_commit", "")
        )

    def end(self, ok: bool) -> None:
        call(client().set_terminated, self.run_id, "FINISHED" if ok else "FAILED")

    def log_params(self, params: dict[str, str]) -> None:
        call(client().log_batch, self.run_id, params=[Param(k, v) for k, v in params.items()])

    def set_tags(self, tags: dict[str, str]) -> None:
        call(client().log_batch, self.run_id, tags=[RunTag(k, v) for k, v in tags.items()])

    def log_metrics(self, metrics: dict[str, float], step: int | None = None) -> None:
        call(mlflow.log_metrics, metrics, step=step, run_id=self.run_id, synchronous=True)

    def log_inputs(self, inputs: list[Input]) -> None:
        """Record the datasets with MLflow's dataset tracking (`mlflow.log_input`), each with
        its digest: MLflow keeps 32 characters of it, the input's `digest` tag all of it."""
        from mlflow.data.code_dataset_source import CodeDatasetSource
        from mlflow.data.numpy_dataset import from_numpy
        from mlflow.entities import DatasetInput, InputTag

        entities = []
        for i in inputs:
            source = (
                i.source
                if not i.batches
                else CodeDatasetSource(
                    {"datastore": i.source, "batches": ",".join(map(str, i.batches))}
                )
            )
            dataset = from_numpy(
                i.images, source=source, targets=i.labels, name=i.name, digest=i.digest[:32]
            )
            tags = [InputTag("mlflow.data.context", i.context), InputTag("digest", i.digest)]
            entities.append(DatasetInput(dataset._to_mlflow_entity(), tags))
        try:
            call(client().log_inputs, self.run_id, entities)
        except MnistError as exc:
            if not _lost_a_dataset_race(exc):
                raise
            # MLflow's SQL store looks a dataset up, then inserts it: a run of the same
            # experiment inserted it in between. Once more finds it and links it.
            call(client().log_inputs, self.run_id, entities)

    def log_file(self, path: Path, directory: str) -> None:
        call(client().log_artifact, self.run_id, str(path), directory)

    def log_json(self, data: dict, artifact_file: str) -> None:
        text = json.dumps(data, indent=2, default=str)
        call(client().log_text, self.run_id, text, artifact_file)

    def log_frame(self, frame: pd.DataFrame, artifact_file: str) -> None:
        call(client().log_text, self.run_id, frame.to_csv(index=False), artifact_file)

    def log_figures(self, figures: dict[str, Figure], directory: str = "plots") -> None:
        import matplotlib.pyplot as plt

        for name, fig in figures.items():
            call(
                client().log_figure,
                self.run_id,
                fig,
                f"{directory}/{name}",
                save_kwargs={"dpi": 110},
            )
            plt.close(fig)

    def log_model(
        self, model: keras.Model, example: np.ndarray, check_on: np.ndarray | None = None
    ) -> str:
        """Log a raw-pixel model under `model` with a signature and, when it passes its check on
        `check_on` (raw pixels; default: `example`), its ONNX copy; returns its URI,
        `models:/m-ID` (MLflow 3 keeps a logged model apart from its run's artifacts)."""
        return self.log_model_with_copy(model, example, check_on).uri

    def log_model_with_copy(
        self, model: keras.Model, example: np.ndarray, check_on: np.ndarray | None = None
    ) -> LoggedModel:
        """`log_model`, also giving the tags of the ONNX copy (`mnist.onnx_model`), which
        the run gets too: `onnx` (`yes`, or `no: why`) and the check's figures. A model whose
        copy cannot be made or fails its check is logged without one."""
        import tempfile

        import numpy as np
        from mlflow.models import infer_signature

        from mnist.onnx_model import make_copy

        signature = infer_signature(example.astype(np.float32), np.asarray(model(example)))
        images = example if check_on is None else check_on
        with tempfile.TemporaryDirectory(prefix="mnist-onnx-") as scratch:
            onnx_file, tags = make_copy(model, Path(scratch), images)
            uri = self._log_model(model, signature, onnx_file)
        self.set_tags(tags)
        return LoggedModel(uri, tags)

    def _log_model(self, model: keras.Model, signature: object, onnx_file: Path | None) -> str:
        import mlflow.models

        # Created here, in this run's experiment: left to itself, MLflow files a logged model
        # under the process's active experiment, not under the run it is given.
        logged = call(
            mlflow.initialize_logged_model,
            name=MODEL_ARTIFACT,
            source_run_id=self.run_id,
            experiment_id=self.experiment_id,
        )
        try:
            call(
                mlflow.models.Model.log,
                None,
                KerasFlavour,
                model=model,
                name=MODEL_ARTIFACT,
                run_id=self.run_id,
                model_id=logged.model_id,
                signature=signature,
                pip_requirements=pip_requirements(),
                onnx_file=onnx_file,
            )
        except MnistError as exc:  # a full disk, say: keep no half-written model
            location = urlparse(logged.artifact_location)
            if location.scheme in ("", "file"):
                shutil.rmtree(location.path, ignore_errors=True)
            with contextlib.suppress(Exception):
                client().delete_logged_model(logged.model_id)
            raise MnistError(
                f"cannot log the model of run {self.run_id} ({exc}); nothing of it was kept"
            ) from exc
        return f"models:/{logged.model_id}"

    def artifact_location(self, path: str = "") -> str:
        """Where an artifact lives: a local path for a file store, else its URI."""
        uri = f"{self.artifact_uri.rstrip('/')}/{path}" if path else self.artifact_uri
        parsed = urlparse(uri)
        return parsed.path if parsed.scheme in ("", "file") else uri

    def link(self) -> str:
        """A link to the run in the MLflow UI when the store is a server, else how to open one."""
        uri = store_uri()
        if uri.startswith(("http://", "https://")):
            return f"{uri.rstrip('/')}/#/experiments/{self.experiment_id}/runs/{self.run_id}"
        where = f"experiment {self.experiment_id}, run {self.run_id}"
        return f"`mlflow ui --backend-store-uri {uri}`, {where}"


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs seconds and lists TensorFlow twice), with
    ONNX Runtime, which the pyfunc loader runs the model's ONNX copy with (without it, a model
    served in an environment of its own would fall back to Keras)."""
    import keras
    import numpy as np
    import onnxruntime
    import tensorflow as tf

    return [
        f"tensorflow-cpu=={tf.__version__}; sys_platform == 'linux'",
        f"tensorflow=={tf.__version__}; sys_platform != 'linux'",
        f"keras=={keras.__version__}",
        f"numpy=={np.__version__}",
        f"onnxruntime=={onnxruntime.__version__}",
    ]
