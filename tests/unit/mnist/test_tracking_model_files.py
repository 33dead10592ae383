"""`mnist.tracking.model_files`: a logged model ships our pyfunc loader, and models logged with
any loader we ever shipped still load, through `load_model` and through MLflow's pyfunc."""

from __future__ import annotations

import hashlib
import shutil
import sys
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest
import yaml

from mnist import mnist_pyfunc
from mnist.tracking import PYFUNC_LOADER, load_model
from mnist.tracking.model_files import KerasFlavour

SHIPPED = Path(__file__).parent / "shipped_loaders"
"""Every `mnist_pyfunc.py` that logged models carry, named by SHA-256: never remove one."""
LOADERS = sorted(SHIPPED.glob("*.txt"))


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_the_current_loader_is_kept_among_the_shipped_ones():
    """Editing mnist/mnist_pyfunc.py: copy the new file into shipped_loaders/ (named by its
    digest) and keep the old digest in `_EARLIER_LOADERS`."""
    assert _digest(Path(mnist_pyfunc.__file__)) in {p.stem for p in LOADERS}
    assert all(p.stem == _digest(p) for p in LOADERS), "a shipped loader's file was edited"


@pytest.fixture(scope="module")
def logged(tmp_path_factory) -> tuple[Path, np.ndarray, np.ndarray]:
    """A tiny model saved by the flavour `Run.log_model` logs with (no store needed), with
    inputs and the Keras model's own answers."""
    import keras
    from mlflow.models import Model

    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((28, 28, 1)), keras.layers.Flatten(), keras.layers.Dense(10, "softmax")]
    )
    x = np.random.default_rng(0).random((5, 28, 28, 1), dtype=np.float32)
    path = tmp_path_factory.mktemp("logged") / "model"
    KerasFlavour.save_model(str(path), Model(), model=model, pip_requirements=["keras"])
    return path, x, np.asarray(model(x))


@pytest.fixture
def fresh_import(monkeypatch) -> Iterator[None]:
    """MLflow's pyfunc puts a model's `code/` first on `sys.path` and imports the loader by
    name: each test imports it afresh, from its own model, and leaves no trace."""
    monkeypatch.setattr(sys, "path", list(sys.path))
    sys.modules.pop(PYFUNC_LOADER, None)
    yield
    sys.modules.pop(PYFUNC_LOADER, None)


def test_a_saved_model_ships_the_current_loader_as_its_pyfunc(logged):
    path, _, _ = logged
    shipped = path / "code" / f"{PYFUNC_LOADER}.py"
    assert shipped.read_bytes() == Path(mnist_pyfunc.__file__).read_bytes()
    meta = yaml.safe_load((path / "MLmodel").read_text())
    assert meta["flavors"]["python_function"]["loader_module"] == PYFUNC_LOADER


@pytest.mark.parametrize("loader", LOADERS, ids=[p.stem[:12] for p in LOADERS])
def test_models_logged_with_any_shipped_loader_still_load(logged, loader, tmp_path, fresh_import):
    """A model directory whose `code/mnist_pyfunc.py` is an earlier loader passes the audit
    and loads with Keras, and MLflow's pyfunc runs that very loader with the same answers."""
    import mlflow.pyfunc

    path, x, expected = logged
    model_dir = tmp_path / "model"
    shutil.copytree(path, model_dir)
    shutil.copyfile(loader, model_dir / "code" / f"{PYFUNC_LOADER}.py")

    keras_model = load_model(str(model_dir))
    np.testing.assert_allclose(np.asarray(keras_model(x)), expected, rtol=1e-5, atol=1e-6)

    pyfunc = mlflow.pyfunc.load_model(str(model_dir))
    module = sys.modules[PYFUNC_LOADER]
    shipped = model_dir / "code" / f"{PYFUNC_LOADER}.py"
    assert Path(str(module.__file__)).resolve() == shipped.resolve()  # not mnist/mnist_pyfunc.py
    np.testing.assert_allclose(pyfunc.predict(x), expected, rtol=1e-5, atol=1e-6)


def _with_data(model_dir: Path, data: str) -> None:
    meta = yaml.safe_load((model_dir / "MLmodel").read_text())
    meta["flavors"]["tensorflow"]["data"] = data
    (model_dir / "MLmodel").write_text(yaml.safe_dump(meta))


@pytest.mark.parametrize("where", ["../outside", "absolute", "linked"])
def test_a_model_whose_data_lies_outside_its_directory_is_refused(logged, tmp_path, where):
    """MLmodel's `data` must be `data`, a real directory inside the model: not `../outside`,
    not an absolute path, not a link to a directory elsewhere."""
    from mnist.errors import MnistError
    from mnist.tracking import check_logged_model

    path, _, _ = logged
    model_dir = Path(shutil.copytree(path, tmp_path / "model"))
    outside = Path(shutil.copytree(path / "data", tmp_path / "outside"))
    if where == "linked":
        shutil.rmtree(model_dir / "data")
        (model_dir / "data").symlink_to(outside, target_is_directory=True)
    else:
        _with_data(model_dir, str(outside) if where == "absolute" else where)
    with pytest.raises(MnistError) as caught:
        check_logged_model(model_dir, "m")
    assert "keeps its data elsewhere than a directory 'data' inside it" in str(caught.value)
    with pytest.raises(MnistError, match="refusing model"):
        load_model(str(model_dir))


def test_a_linked_keras_file_is_refused(logged, tmp_path):
    from mnist.errors import MnistError
    from mnist.tracking import check_logged_model

    path, _, _ = logged
    model_dir = Path(shutil.copytree(path, tmp_path / "model"))
    keras_file = model_dir / "data" / "model.keras"
    keras_file.rename(tmp_path / "elsewhere.keras")
    keras_file.symlink_to(tmp_path / "elsewhere.keras")
    with pytest.raises(MnistError, match="it is not a Keras 3 model file"):
        check_logged_model(model_dir, "m")


def test_a_model_served_in_its_own_environment_gets_onnx_runtime():
    """Without ONNX Runtime in the requirements, `mlflow models serve` would answer through
    Keras."""
    import onnxruntime

    from mnist.tracking import pip_requirements

    assert f"onnxruntime=={onnxruntime.__version__}" in pip_requirements()
