"""`mnist predict` on real logged models in a real MLflow store: an unknown model is one line,
and a model directory that would run code is refused (`mnist.tracking.model_files`)."""

import importlib.util
import pickle
import py_compile
import shutil
from pathlib import Path

import mlflow
import numpy as np
import pytest
import yaml
from PIL import Image

from app.cli import main
from mnist import models
from mnist.tracking import Run, load_model
from tests.conftest import tracking_store

pytestmark = pytest.mark.slow  # real logged models and processes: not the unit tier


@pytest.fixture
def png(tmp_path) -> Path:
    path = tmp_path / "digit.png"
    Image.fromarray(np.full((28, 28), 200, np.uint8)).save(path)
    return path


def test_unknown_model_uri_is_one_line(store, png, capsys):
    assert main(["predict", "--model", "models:/no-such-model@champion", str(png)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        f"mnist: error: cannot load model 'models:/no-such-model@champion': MLflow at {store}: "
    )
    assert len(err.splitlines()) == 1


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> Path:
    """The directory of a real logged model (an untrained `small` net), as MLflow stores it:
    each test tampers with a copy."""
    root = tmp_path_factory.mktemp("logged")
    with tracking_store(root):
        run = Run.start("faults", "untrained", {})
        uri = run.log_model(models.for_raw_pixels(models.build("small")), np.zeros((2, 28, 28)))
        run.end(True)
        return Path(mlflow.artifacts.download_artifacts(uri, dst_path=str(root / "model")))


def _ship_code(model_dir: Path, marker: Path, flavor: str) -> None:
    """Make an MLflow model directory ship a module that leaves `marker` when imported, named
    by the given flavour (MLflow reads a `keras` flavour before the `tensorflow` one)."""
    (model_dir / "code").mkdir(exist_ok=True)
    (model_dir / "code" / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    conf = meta["flavors"].setdefault(flavor, dict(meta["flavors"]["tensorflow"]))
    conf["code"], conf["keras_module"] = "code", "evil"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta))


class _Marker:
    """Unpickling it writes a file: what a pickled "custom object" can do."""

    def __init__(self, path: str):
        self.path = path

    def __reduce__(self):
        return (Path.write_text, (Path(self.path), "ran"))


def _pyfunc_loader(model_dir: Path, marker: Path) -> None:
    """Make MLflow's pyfunc loader of the directory a module of its own."""
    (model_dir / "code" / "evil.py").write_text(
        f"import pathlib\npathlib.Path({str(marker)!r}).write_text('ran')\n"
    )
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    meta["flavors"]["python_function"]["loader_module"] = "evil"
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta))


def _edit_loader(model_dir: Path, marker: Path) -> None:
    """Make the shipped loader (run by `mlflow.pyfunc`, never by mnist) do more."""
    loader = model_dir / "code" / "mnist_pyfunc.py"
    loader.write_text(loader.read_text() + f"\nopen({str(marker)!r}, 'w').write('ran')\n")


def _link_code(model_dir: Path, marker: Path) -> None:
    (model_dir / "code" / "more").symlink_to(marker.parent)


def _pickle(model_dir: Path, marker: Path) -> None:
    payload = pickle.dumps(_Marker(str(marker)))
    (model_dir / "data" / "custom_objects.cloudpickle").write_bytes(payload)


@pytest.mark.parametrize(
    ("tamper", "problem"),
    [
        (lambda d, m: _ship_code(d, m, "tensorflow"), "ships code and names the module 'evil'"),
        (
            lambda d, m: _ship_code(d, m, "keras"),
            "has the flavour(s) keras and ships code and names the module 'evil'",
        ),
        (_pyfunc_loader, "ships code and names the loader 'evil'"),
        (_edit_loader, "ships code"),
        (_link_code, "ships code"),
        (_pickle, "holds pickled objects"),
    ],
    ids=[
        "tensorflow flavour",
        "keras flavour",
        "pyfunc loader",
        "edited loader",
        "linked code",
        "pickled custom objects",
    ],
)
def test_a_model_directory_cannot_run_code(logged, tmp_path, png, capsys, tamper, problem):
    model_dir = Path(shutil.copytree(logged, tmp_path / "m"))
    load_model(str(model_dir))  # as logged, it loads
    marker = tmp_path / "marker"
    tamper(model_dir, marker)
    assert main(["predict", "--model", str(model_dir), str(png)]) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mnist: error: refusing model {str(model_dir)!r}: it {problem}; only models logged by "
        "mnist-pipeline are loaded"
    )
    assert not marker.exists()


def test_a_model_loaded_in_place_by_mlflow_pyfunc_still_loads(logged, tmp_path):
    """MLflow's pyfunc imports the shipped loader from the store itself, which can leave its
    bytecode cache in the model's `code/`: that is not code the model ships."""
    model_dir = Path(shutil.copytree(logged, tmp_path / "m"))
    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    assert pyfunc.predict(np.zeros((1, 28, 28), np.float32)).shape == (1, 10)
    loader = model_dir / "code" / "mnist_pyfunc.py"
    py_compile.compile(str(loader), cfile=importlib.util.cache_from_source(str(loader)))
    assert list((model_dir / "code" / "__pycache__").glob("mnist_pyfunc.*.pyc"))
    load_model(str(model_dir))
