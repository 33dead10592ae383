"""The one door to MLflow: the store, runs, logged models and loading them.

Every MLflow call of the project goes through `call`, which turns any failure (an unreachable
server included) into one `MnistError` naming the store and the problem. A `Run` is bound to
its run id, so Prefect may run tasks in any thread (MLflow's "active run" is thread-local).
The store is MLflow's default (`sqlite:///mlflow.db`, artifacts in `./mlruns`) unless
`MLFLOW_TRACKING_URI` says otherwise. Keras and TensorFlow load only when a model does.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import json
import logging
import os
import shutil
import socket
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar
from urllib.parse import urlparse

import mlflow
from mlflow import MlflowClient
from mlflow.entities import Param, RunTag
from mlflow.exceptions import MlflowException

import mnist
from mnist import mnist_pyfunc
from mnist.errors import MnistError, first_line

if TYPE_CHECKING:
    import keras
    import numpy as np
    import pandas as pd
    from matplotlib.figure import Figure

log = logging.getLogger(__name__)
MODEL_ARTIFACT = "model"
PYFUNC_LOADER = mnist_pyfunc.__name__.rpartition(".")[2]
"""The pyfunc loader module, shipped with each model as `code/mnist_pyfunc.py`."""
_EARLIER_LOADERS: tuple[str, ...] = (
    "bdaaf96a443c3d8c45ed4833cc313c29ba8b9785168dab4729aa5e3d80d21926",
)
"""SHA-256 of earlier `mnist_pyfunc.py` files: when the file changes, add its old digest here,
or the models logged with it stop loading (tests/test_tracking.py pins every shipped one)."""
PYFUNC_LOADER_DIGESTS = {
    hashlib.sha256(Path(mnist_pyfunc.__file__).read_bytes()).hexdigest(),
    *_EARLIER_LOADERS,
}
"""The loaders a logged model may ship: this one and every earlier one."""
# MLflow logs a store error with its traceback before raising it; `call` turns it into one line.
logging.getLogger("mlflow.store.db.utils").setLevel(logging.CRITICAL)
NOT_FOUND = ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE")
T = TypeVar("T")


class NotFound(MnistError):
    """The experiment, run, model, version or alias asked for does not exist."""


def store_uri() -> str:
    return mlflow.get_tracking_uri()


RESTART_SECONDS = 30.0
"""How long a call waits for a tracking server that refuses connections (one restarting) before
it gives up: `MNIST_MLFLOW_RESTART_SECONDS`."""


def _refused(exc: BaseException) -> bool:
    """Whether the server refused the connection: the request never reached it, so sending it
    again cannot do anything twice."""
    text = f"{exc} {exc.__cause__ or ''} {exc.__context__ or ''}"
    return "Connection refused" in text or "Errno 111" in text


def call(fn: Callable[..., T], *args: Any, missing: str | None = None, **kwargs: Any) -> T:
    """Run an MLflow call, turning its errors into one line naming the store; `missing` is
    the message for something that does not exist. A tracking server that refuses connections
    (restarting) is waited for, up to `MNIST_MLFLOW_RESTART_SECONDS` (30)."""
    _initialise(store_uri())
    patience = float(os.environ.get("MNIST_MLFLOW_RESTART_SECONDS", RESTART_SECONDS))
    deadline, warned = time.monotonic() + patience, False
    while True:
        try:
            return fn(*args, **kwargs)
        except (MlflowException, OSError) as exc:
            remote = store_uri().startswith(("http://", "https://"))
            if not (remote and _refused(exc) and time.monotonic() < deadline):
                raise _one_line(exc, missing) from exc
            if not warned:
                log.warning(
                    "the MLflow tracking server at %s refuses connections; waiting up "
                    "to %.0f s for it to come back",
                    store_uri(),
                    patience,
                )
                warned = True
            time.sleep(2)


def _one_line(exc: BaseException, missing: str | None) -> MnistError:
    if isinstance(exc, MlflowException):
        if missing and exc.error_code in NOT_FOUND:
            return NotFound(missing)
        message = first_line(exc)
        if "Max retries exceeded" in message or "Failed to establish" in message:
            return MnistError(f"cannot reach the MLflow tracking server at {store_uri()}")
        return MnistError(f"MLflow at {store_uri()}: {message}")
    if store_uri().startswith(("http://", "https://")):  # requests' ConnectionError: an OSError
        return MnistError(f"cannot reach the MLflow tracking server at {store_uri()}")
    return MnistError(f"MLflow at {store_uri()}: {getattr(exc, 'strerror', None) or exc}")


def state_dir() -> Path:
    """Where this machine keeps state that goes with the store (its locks): beside a SQLite
    store, else the per-user state directory."""
    if (path := _sqlite_path(store_uri())) is not None:
        return path.resolve().parent
    import platformdirs

    return Path(platformdirs.user_state_dir("mnist-pipeline"))


def _sqlite_path(uri: str) -> Path | None:
    """The database file of a SQLite store, else None."""
    return Path(uri.removeprefix("sqlite:///")) if uri.startswith("sqlite:///") else None


def client() -> MlflowClient:
    _initialise(store_uri())
    return MlflowClient()


@functools.cache
def _initialise(uri: str) -> None:
    """Create a new SQLite store once, under a file lock beside it: two first runs at once
    would both run MLflow's schema migrations, and one of them would fail. A store that
    cannot be opened (corrupt, read-only, a missing directory) is one line."""
    if (path := _sqlite_path(uri)) is None:
        return
    with contextlib.ExitStack() as stack:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            import fcntl

            lock = stack.enter_context(open(f"{path}.lock", "a"))
            fcntl.flock(lock, fcntl.LOCK_EX)  # released by the kernel, also when we are killed
        except OSError:  # a read-only place: nothing can be created there, nothing to lock
            pass
        try:
            MlflowClient(uri).search_registered_models(max_results=1)
        except Exception as exc:  # a corrupt or unwritable database fails deep in SQLAlchemy
            raise MnistError(f"MLflow store {uri} cannot be opened: {first_line(exc)}") from exc


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
        tags = {"git_commit": commit, "mlflow.source.git.commit": commit, **_owner(), **tags}
        run = call(client().create_run, exp_id, run_name=name, tags=tags)
        return cls(run.info.run_id, exp_id, run.info.artifact_uri, commit)

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
        import mlflow.data
        from mlflow.data.code_dataset_source import CodeDatasetSource
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
            dataset = mlflow.data.from_numpy(
                i.images, source=source, targets=i.labels, name=i.name, digest=i.digest[:32]
            )
            tags = [InputTag("mlflow.data.context", i.context), InputTag("digest", i.digest)]
            entities.append(DatasetInput(dataset._to_mlflow_entity(), tags))
        call(client().log_inputs, self.run_id, entities)

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

    def log_model(self, model: keras.Model, example: np.ndarray) -> str:
        """Log a raw-pixel model under `model` with a signature; returns its URI,
        `models:/m-ID` (MLflow 3 keeps a logged model apart from its run's artifacts)."""
        import mlflow.models
        import numpy as np
        from mlflow.models import infer_signature

        signature = infer_signature(example.astype(np.float32), np.asarray(model(example)))
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
                _KerasFlavour,
                model=model,
                name=MODEL_ARTIFACT,
                run_id=self.run_id,
                model_id=logged.model_id,
                signature=signature,
                pip_requirements=pip_requirements(),
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


class _KerasFlavour:
    """MLflow's TensorFlow flavour (`mlflow.tensorflow.load_model` gives the Keras model), with
    its pyfunc flavour loaded by `mnist_pyfunc`, shipped as the model's only code: one graph
    call per chunk instead of a data pipeline per call (`mnist/mnist_pyfunc.py`)."""

    @staticmethod
    def save_model(path: str, mlflow_model: Any, **kwargs: Any) -> None:
        import mlflow.tensorflow
        from mlflow.pyfunc import FLAVOR_NAME

        mlflow.tensorflow.save_model(
            path=path, mlflow_model=mlflow_model, code_paths=[mnist_pyfunc.__file__], **kwargs
        )
        mlflow_model.flavors[FLAVOR_NAME]["loader_module"] = PYFUNC_LOADER
        mlflow_model.save(str(Path(path) / "MLmodel"))


def _started(pid: int) -> str:
    """When process `pid` started (clock ticks since boot), to tell it from a later process
    that reuses its pid; empty where /proc is not there."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _pid_namespace() -> str:
    """This process's PID namespace: containers sharing a host name do not share it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def _owner() -> dict[str, str]:
    pid = os.getpid()
    return {
        "mnist.host": socket.gethostname(),
        "mnist.pidns": _pid_namespace(),
        "mnist.pid": str(pid),
        "mnist.pid_started": _started(pid),
    }


def _alive(tags: dict[str, str]) -> bool:
    """Whether the process that owns a run (from its `_owner` tags) still runs."""
    try:
        pid = int(tags["mnist.pid"])
        os.kill(pid, 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return _started(pid) == tags.get("mnist.pid_started", "")


@dataclass(frozen=True)
class StaleRun:
    """A run left RUNNING by a process that is gone, and why we know it is."""

    run_id: str
    experiment_id: str
    name: str
    pid: str
    flow_run_id: str
    flow_state: str = ""  # the final state of its Prefect flow run, when that told us

    @property
    def here(self) -> bool:
        """Found by its process on this host, not by its flow run: that flow run (if any)
        still needs closing."""
        return not self.flow_state

    @property
    def reason(self) -> str:
        if self.flow_state:
            return f"its Prefect flow run ended {self.flow_state}; marked by mnist"
        return f"its process (pid {self.pid}) ended without closing it; marked by mnist"


def stale_runs(
    experiment_ids: list[str] | None = None,
    ended: Callable[[list[str]], dict[str, str]] | None = None,
) -> list[StaleRun]:
    """RUNNING runs whose process is gone: started on this host by a process that no longer
    runs, or, wherever they ran, whose Prefect flow run is over (`ended` maps the flow run ids
    it is given to the final states of those that are over)."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in call(client().search_experiments)]
    if not experiment_ids:
        return []
    runs = call(
        client().search_runs, experiment_ids, "attributes.status = 'RUNNING'", max_results=10000
    )
    host, pidns = socket.gethostname(), _pid_namespace()
    stale, elsewhere = [], []
    for r in runs:
        tags = r.data.tags
        run = StaleRun(
            r.info.run_id,
            r.info.experiment_id,
            r.info.run_name or "",
            tags.get("mnist.pid", ""),
            tags.get("prefect.flow_run_id", ""),
        )
        if tags.get("mnist.host") == host and tags.get("mnist.pidns") == pidns:
            if not _alive(tags):
                stale.append(run)
        elif run.flow_run_id:
            elsewhere.append(run)
    if ended and elsewhere:
        states = ended([run.flow_run_id for run in elsewhere])
        stale += [
            replace(run, flow_state=states[run.flow_run_id])
            for run in elsewhere
            if run.flow_run_id in states
        ]
    return stale


def fail_stale_runs(stale: list[StaleRun] | None = None) -> list[StaleRun]:
    """Close stale runs (by default every one, `stale_runs()`) saying why: FINISHED when their
    flow run completed, else FAILED; returns them. Close their Prefect flow runs first: their
    ids are not looked for again."""
    stale = stale_runs() if stale is None else stale
    for run in stale:
        call(client().set_tag, run.run_id, "mnist.failure", run.reason)
        status = "FINISHED" if run.flow_state == "COMPLETED" else "FAILED"
        call(client().set_terminated, run.run_id, status)
    return stale


def pip_requirements() -> list[str]:
    """Explicit requirements (inferring them costs seconds and lists TensorFlow twice)."""
    import keras
    import numpy as np
    import tensorflow as tf

    return [
        f"tensorflow-cpu=={tf.__version__}; sys_platform == 'linux'",
        f"tensorflow=={tf.__version__}; sys_platform != 'linux'",
        f"keras=={keras.__version__}",
        f"numpy=={np.__version__}",
    ]


KERAS_MODULES = ("keras", "tensorflow.keras")
"""The only Keras modules a logged model may name (MLflow would import any module named)."""
PICKLES = ("*.pkl", "*.pickle", "*.cloudpickle")


def check_logged_model(path: Path, ref: str) -> Path:
    """The Keras file of an MLflow model directory that this project logged, or an error: the
    TensorFlow flavour (and the pyfunc one, loaded by `mlflow.tensorflow` or by the shipped
    `mnist_pyfunc.py`) and no other, no other code, a real Keras module, no pickled objects, a
    `.keras` file. The file is then loaded by Keras in safe mode, never through MLflow: no code
    in the directory runs here, and a directory shaped otherwise was not logged by us."""
    from mlflow.models import Model

    try:
        meta = Model.load(str(path / "MLmodel"))
    except Exception as exc:  # a hostile or damaged MLmodel: any parse error is possible
        raise MnistError(f"model {ref!r}: unreadable MLmodel file ({exc})") from exc
    flavor = meta.flavors.get("tensorflow")
    if not isinstance(flavor, dict):
        kinds = ", ".join(meta.flavors) or "none"
        raise MnistError(f"model {ref!r} has no TensorFlow flavour (flavours: {kinds})")
    problems = []
    if others := sorted(set(meta.flavors) - {"tensorflow", "python_function"}):
        problems.append(f"has the flavour(s) {', '.join(others)}")
    codes = {conf.get("code") for conf in meta.flavors.values() if isinstance(conf, dict)}
    if (codes - {None, "code"}) or not _only_our_loader(path / "code"):
        problems.append("ships code")
    named = path / str(flavor.get("data", "data")) / "keras_module.txt"
    modules = {
        conf["keras_module"]
        for conf in meta.flavors.values()
        if isinstance(conf, dict) and conf.get("keras_module")
    }
    modules |= {named.read_text().strip()} if named.is_file() else set()
    if bad := sorted(modules - set(KERAS_MODULES)):
        problems.append(f"names the module {bad[0]!r}")
    pyfunc = meta.flavors.get("python_function") or {}
    if pyfunc and pyfunc.get("loader_module") not in ("mlflow.tensorflow", PYFUNC_LOADER):
        problems.append(f"names the loader {pyfunc.get('loader_module')!r}")
    if any(next(path.rglob(pattern), None) for pattern in PICKLES):
        problems.append("holds pickled objects")
    keras_file = path / str(flavor.get("data", "data")) / "model.keras"
    if flavor.get("model_type", "keras") != "keras" or not keras_file.is_file():
        problems.append("is not a Keras 3 model file")
    if problems:
        raise MnistError(
            f"refusing model {ref!r}: it {' and '.join(problems)}; only models logged by "
            "mnist-pipeline are loaded"
        )
    return keras_file


def _only_our_loader(code: Path) -> bool:
    """Nothing in `code/` but a loader this project shipped (and the bytecode cache that
    MLflow's pyfunc leaves beside it when it loads a model in place); no links."""
    for item in code.rglob("*") if code.is_dir() else ():
        if item.is_symlink():
            return False
        if item.is_dir() and item.name == "__pycache__" and item.parent == code:
            continue
        if item.parent == code / "__pycache__" and item.name.startswith(f"{PYFUNC_LOADER}."):
            continue  # never read here: nothing in a model directory is imported by us
        if item != code / f"{PYFUNC_LOADER}.py":
            return False
        if hashlib.sha256(item.read_bytes()).hexdigest() not in PYFUNC_LOADER_DIGESTS:
            return False
    return True


def load_model(ref: str) -> keras.Model:
    """A raw-pixel Keras model from a `.keras` file, an MLflow model directory, or an MLflow URI
    (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/m-ID`, `runs:/ID/model`). MLflow
    models pass `check_logged_model`; Keras loads the file itself, in safe mode."""
    import tempfile

    import keras
    import mlflow.artifacts

    path = Path(ref).expanduser()
    try:
        with tempfile.TemporaryDirectory(prefix="mnist-model-") as scratch:
            if not (path.is_file() and path.suffix == ".keras"):
                if not (path.is_dir() and (path / "MLmodel").is_file()):
                    if "://" not in ref and ":/" not in ref:
                        raise MnistError(
                            f"model {ref!r}: no such .keras file or MLflow model directory"
                        )
                    try:
                        path = Path(
                            call(
                                mlflow.artifacts.download_artifacts,
                                artifact_uri=ref,
                                dst_path=scratch,
                            )
                        )
                    except MnistError as exc:
                        raise MnistError(f"cannot load model {ref!r}: {exc}") from exc
                path = check_logged_model(path, ref)
            return keras.saving.load_model(path, safe_mode=True)
    except MnistError:
        raise
    except Exception as exc:  # a damaged or hostile file can fail anywhere inside Keras
        detail = f"{type(exc).__name__}: {first_line(exc)}"
        raise MnistError(f"cannot load model {ref!r}: {detail}") from exc
