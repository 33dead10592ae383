"""Model files: how a model is saved into MLflow (the TensorFlow flavour with our own pyfunc
loader, and the model's ONNX copy `data/model.onnx` when it has one), the audit that an MLflow
model directory is one this project logged, and loading a model from a `.keras` file, a model
directory or an MLflow URI.

Each logged model ships `mnist/mnist_pyfunc.py` as its pyfunc loader; the audit accepts that
file only with the digest of this loader or of an earlier one (`_EARLIER_LOADERS`). Neither the
audit nor finding a local model directory imports MLflow (start-up time): only a download does.
"""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path
from typing import TYPE_CHECKING, Any, cast

from mnist import mnist_pyfunc
from mnist.errors import MnistError, first_line
from mnist.references import ModelRef

if TYPE_CHECKING:
    import keras

MODEL_ARTIFACT = "model"
DATA_DIR = "data"
"""The flavour's data directory inside a model directory: MLflow's TensorFlow flavour always
writes `data`, and the audit accepts no other (so nothing is read from outside the model)."""
KERAS_FILE = "model.keras"
ONNX_FILE = mnist_pyfunc.ONNX_FILE
"""A logged model's ONNX copy, beside its `model.keras` (`mnist.onnx_model`)."""
PYFUNC_LOADER = mnist_pyfunc.__name__.rpartition(".")[2]
"""The pyfunc loader module, shipped with each model as `code/mnist_pyfunc.py`."""
_EARLIER_LOADERS: tuple[str, ...] = (
    "bdaaf96a443c3d8c45ed4833cc313c29ba8b9785168dab4729aa5e3d80d21926",
    "50b2491f960221e180ecf0f7adec1704d1e39c28f4def673c0422aa4cd15d537",
    "52eb1be92d71c7b20cd82ae6b934c179307d3ca60b0c6ae7749a467f1b2405de",
    "3b3275a92f8a745f0d30e07bf8bed9e81babf142b17aeab6cb4fc20c8f0ba5bd",
)
"""SHA-256 of earlier `mnist_pyfunc.py` files: when the file changes, add its old digest here,
or the models logged with it stop loading, and copy the new file into
`tests/unit/mnist/shipped_loaders/` (named by its digest), where a test loads a model with each."""
PYFUNC_LOADER_DIGESTS = {
    hashlib.sha256(Path(mnist_pyfunc.__file__).read_bytes()).hexdigest(),
    *_EARLIER_LOADERS,
}
"""The loaders a logged model may ship: this one and every earlier one."""


class KerasFlavour:
    """MLflow's TensorFlow flavour (`mlflow.tensorflow.load_model` gives the Keras model), with
    its pyfunc flavour loaded by `mnist_pyfunc`, shipped as the model's only code: one graph
    call per chunk instead of a data pipeline per call (`mnist/mnist_pyfunc.py`)."""

    @staticmethod
    def save_model(
        path: str, mlflow_model: Any, onnx_file: Path | None = None, **kwargs: Any
    ) -> None:
        """MLflow's TensorFlow flavour, our pyfunc loader, and `onnx_file` (the model's
        checked ONNX copy, when it has one) copied in as `data/model.onnx`."""
        from mlflow.pyfunc import FLAVOR_NAME
        from mlflow.tensorflow import save_model

        save_model(
            path=path, mlflow_model=mlflow_model, code_paths=[mnist_pyfunc.__file__], **kwargs
        )
        mlflow_model.flavors[FLAVOR_NAME]["loader_module"] = PYFUNC_LOADER
        mlflow_model.save(str(Path(path) / "MLmodel"))
        if onnx_file is not None:
            shutil.copyfile(onnx_file, Path(path) / DATA_DIR / ONNX_FILE)


KERAS_MODULES = ("keras", "tensorflow.keras")
"""The only Keras modules a logged model may name (MLflow would import any module named)."""
PICKLES = ("*.pkl", "*.pickle", "*.cloudpickle")


def check_logged_model(path: Path, ref: str) -> Path:
    """The Keras file of an MLflow model directory that this project logged, or an error: the
    TensorFlow flavour (and the pyfunc one, loaded by `mlflow.tensorflow` or by the shipped
    `mnist_pyfunc.py`) and no other, no other code, a real Keras module, no pickled objects,
    its data in `data/` (a real directory, no link) holding a plain `model.keras` file and an
    ONNX copy (`data/model.onnx`), if any, that is a plain file too. The
    file is then loaded by Keras in safe mode (or the copy by ONNX Runtime), never through
    MLflow: no code in the directory runs here, and a directory shaped otherwise was not logged
    by us. The MLmodel file is read as YAML, without importing MLflow."""
    import yaml

    try:
        meta = yaml.safe_load((path / "MLmodel").read_text())
        if not isinstance(meta, dict):
            raise TypeError(f"it holds a {type(meta).__name__}, not a mapping")
        flavors = meta.get("flavors") or {}
        if not isinstance(flavors, dict):
            raise TypeError(f"its flavors are a {type(flavors).__name__}, not a mapping")
    except Exception as exc:  # a hostile or damaged MLmodel: any parse error is possible
        raise MnistError(f"model {ref!r}: unreadable MLmodel file ({exc})") from exc
    flavor = flavors.get("tensorflow")
    if not isinstance(flavor, dict):
        kinds = ", ".join(map(str, flavors)) or "none"
        raise MnistError(f"model {ref!r} has no TensorFlow flavour (flavours: {kinds})")
    problems = []
    if others := sorted(map(str, set(flavors) - {"tensorflow", "python_function"})):
        problems.append(f"has the flavour(s) {', '.join(others)}")
    codes = {conf.get("code") for conf in flavors.values() if isinstance(conf, dict)}
    if (codes - {None, "code"}) or not _only_our_loader(path / "code"):
        problems.append("ships code")
    data_ok = flavor.get("data", DATA_DIR) == DATA_DIR and _plain(path / DATA_DIR, path, dir=True)
    if not data_ok:
        problems.append(f"keeps its data elsewhere than a directory {DATA_DIR!r} inside it")
    named = path / DATA_DIR / "keras_module.txt"
    modules = {
        conf["keras_module"]
        for conf in flavors.values()
        if isinstance(conf, dict) and conf.get("keras_module")
    }
    modules |= {named.read_text().strip()} if data_ok and _plain(named, path) else set()
    if bad := sorted(modules - set(KERAS_MODULES)):
        problems.append(f"names the module {bad[0]!r}")
    pyfunc = flavors.get("python_function") or {}
    if pyfunc and pyfunc.get("loader_module") not in ("mlflow.tensorflow", PYFUNC_LOADER):
        problems.append(f"names the loader {pyfunc.get('loader_module')!r}")
    if any(next(path.rglob(pattern), None) for pattern in PICKLES):
        problems.append("holds pickled objects")
    keras = keras_file(path)
    if flavor.get("model_type", "keras") != "keras" or not (data_ok and _plain(keras, path)):
        problems.append("is not a Keras 3 model file")
    onnx = keras.parent / ONNX_FILE
    if data_ok and (onnx.exists() or onnx.is_symlink()) and not _plain(onnx, path):
        problems.append("holds an ONNX copy that is not a plain file")
    if problems:
        raise MnistError(
            f"refusing model {ref!r}: it {' and '.join(problems)}; only models logged by "
            "mnist-pipeline are loaded"
        )
    return keras


def _plain(item: Path, model: Path, dir: bool = False) -> bool:
    """Whether `item` is a plain file (or directory) inside the directory `model`, reached
    without following a link (`model` itself may be one)."""
    if item.is_symlink() or not (item.is_dir() if dir else item.is_file()):
        return False
    return item.resolve().is_relative_to(model.resolve())


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


def fetch_model(ref: str, scratch: Path, name: str | None = None) -> Path:
    """The `.keras` file or the audited MLflow model directory (`check_logged_model`) that
    `ref` names: a local path as it is, a URI downloaded into `scratch`. MLflow is imported
    only to download. Messages name the model `name` (default: `ref`)."""
    name = ref if name is None else name
    path = Path(ref).expanduser()
    if path.is_file() and path.suffix == ".keras":
        return path
    if not (path.is_dir() and (path / "MLmodel").is_file()):
        if ModelRef.parse(ref).local:
            raise MnistError(f"model {name!r}: no such .keras file or MLflow model directory")
        import mlflow.artifacts

        from mnist.tracking.store import call

        try:
            path = Path(
                call(mlflow.artifacts.download_artifacts, artifact_uri=ref, dst_path=str(scratch))
            )
        except MnistError as exc:
            raise MnistError(f"cannot load model {name!r}: {exc}") from exc
    check_logged_model(path, name)
    return path


def keras_file(path: Path) -> Path:
    """The Keras file of what `fetch_model` gave: itself, or the model directory's (in its
    `data/`, the only data directory `check_logged_model` accepts)."""
    return path if path.is_file() else path / DATA_DIR / KERAS_FILE


def onnx_copy(path: Path) -> Path | None:
    """The ONNX copy of what `fetch_model` gave, if it has one (a `.keras` file has none)."""
    copy = path / DATA_DIR / ONNX_FILE
    return copy if path.is_dir() and copy.is_file() else None


def load_keras(path: Path, ref: str) -> keras.Model:
    """A `.keras` file loaded by Keras in safe mode; any failure is one `MnistError`."""
    import keras

    try:
        # A `.keras` file holds one model (its config names the class).
        return cast("keras.Model", keras.saving.load_model(path, safe_mode=True))
    except Exception as exc:  # a damaged or hostile file can fail anywhere inside Keras
        detail = f"{type(exc).__name__}: {first_line(exc)}"
        raise MnistError(f"cannot load model {ref!r}: {detail}") from exc


def load_model(ref: str) -> keras.Model:
    """A raw-pixel Keras model from a `.keras` file, an MLflow model directory, or an MLflow URI
    (`models:/NAME@ALIAS`, `models:/NAME/VERSION`, `models:/m-ID`, `runs:/ID/model`). MLflow
    models pass `check_logged_model`; Keras loads the file itself, in safe mode."""
    import tempfile

    with tempfile.TemporaryDirectory(prefix="mnist-model-") as scratch:
        return load_keras(keras_file(fetch_model(ref, Path(scratch))), ref)
