"""The `mnist` command as users run it: one-line errors, predictions on real digits."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.cli import main


def _mnist(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_help_lists_every_training_option(capsys):
    with pytest.raises(SystemExit) as exit_:
        main(["train", "--help"])
    assert exit_.value.code == 0
    out = capsys.readouterr().out
    for option in (
        "--epochs",
        "--batch-size",
        "--learning-rate",
        "--seed",
        "--model",
        "--validation-split",
        "--data-dir",
        "--nan-policy",
        "--experiment",
    ):
        assert option in out
    assert "MNIST_EPOCHS" in out


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--epochs", "0"], "--epochs: Input should be greater than or equal to 1"),
        (["--nan-policy", "skip"], "--nan-policy: Input should be 'fail', 'drop' or 'impute'"),
        (["--batch-size", "many"], "--batch-size: Input should be a valid integer"),
    ],
)
def test_bad_options_are_one_line_errors(capsys, args, message):
    assert main(["train", *args]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("mnist: error: invalid option(s)") and message in err
    assert len(err.splitlines()) == 1


def test_environment_variables_set_options(capsys, monkeypatch):
    monkeypatch.setenv("MNIST_EPOCHS", "-3")
    assert main(["train"]) == 2
    assert "--epochs: Input should be greater than or equal to 1" in capsys.readouterr().err


@pytest.mark.slow
def test_corrupt_data_fails_in_one_line_without_traceback(tmp_path, mnist_path):
    for name in (
        "train-images-idx3-ubyte",
        "train-labels-idx1-ubyte",
        "t10k-images-idx3-ubyte",
        "t10k-labels-idx1-ubyte",
    ):
        (tmp_path / f"{name}.gz").write_bytes((mnist_path / f"{name}.gz").read_bytes())
    bad = tmp_path / "t10k-labels-idx1-ubyte.gz"
    bad.write_bytes(bad.read_bytes()[:100])
    proc = _mnist(
        "train",
        "--data-dir",
        str(tmp_path),
        env={"MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"},
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stdout + proc.stderr
    errors = [line for line in proc.stderr.splitlines() if line.startswith("mnist: error:")]
    assert errors == [
        f"mnist: error: {bad}: truncated or corrupt gzip data "
        "(Compressed file ended before the end-of-stream marker was reached)"
    ]
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".gz") == sorted(
        p.name for p in mnist_path.iterdir() if p.suffix == ".gz"
    )  # nothing added, nothing half-written


@pytest.fixture(scope="module")
def digits(tmp_path_factory, mnist_data):
    """PNGs written from the first 12 real test images, and their labels."""
    folder = tmp_path_factory.mktemp("digits")
    paths = []
    for i in range(12):
        path = folder / f"test{i}_label{mnist_data.test.labels[i]}.png"
        Image.fromarray(mnist_data.test.images[i]).save(path)
        paths.append(path)
    return paths, mnist_data.test.labels[:12]


@pytest.mark.slow
def test_predict_pngs_with_a_logged_model(full_run, workdir, digits):
    _, result = full_run
    paths, labels = digits
    out = workdir / "preds.csv"
    proc = _mnist("predict", "--model", result.model_uri, *map(str, paths), "--output", str(out))
    assert proc.returncode == 0, proc.stderr
    table = pd.read_csv(out)
    assert table["input"].tolist() == [str(p) for p in paths]
    assert (table["digit"].to_numpy() == labels).mean() >= 11 / 12
    assert table["probability"].between(0, 1).all()


@pytest.mark.slow
def test_predict_arrays_with_nan_drop_policy(full_run, workdir, mnist_data, capsys):
    _, result = full_run
    x = mnist_data.test.images[:5].astype(np.float32)
    x[2, 3, 3] = np.nan
    np.save(workdir / "five.npy", x)
    assert main(["predict", "--model", result.model_uri, str(workdir / "five.npy")]) == 1
    assert "--nan-policy" in capsys.readouterr().err
    args = ["predict", "--model", result.model_uri, str(workdir / "five.npy"), "--nan-policy"]
    assert main([*args, "drop"]) == 0
    captured = capsys.readouterr()
    assert "five.npy[2]" not in captured.out and "five.npy[4]" in captured.out
    assert "1 NaN pixel(s) in 1 of 5 samples" in captured.err


def test_unknown_model_uri_is_one_line(workdir, digits, capsys):
    paths, _ = digits
    assert main(["predict", "--model", "models:/no-such-model@champion", str(paths[0])]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(
        "mnist: error: cannot load model 'models:/no-such-model@champion': "
        f"MLflow at sqlite:///{workdir / 'mlflow.db'}: "
    )
    assert len(err.splitlines()) == 1


def test_missing_model_path(tmp_path, digits, capsys):
    paths, _ = digits
    assert main(["predict", "--model", str(tmp_path / "none.keras"), str(paths[0])]) == 1
    assert "no such .keras file or MLflow model directory" in capsys.readouterr().err


def test_unreadable_image_is_one_line(tmp_path, capsys):
    bad = tmp_path / "broken.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot an image")
    assert main(["predict", "--model", "runs:/x/model", str(bad)]) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mnist: error: {bad}: not a readable PNG or JPEG image")


def test_commands_that_need_no_model_do_not_load_tensorflow(tmp_path):
    """`mnist --help` and `mnist registry ...` answer without importing TensorFlow or Keras."""
    probe = (
        "import sys, contextlib, io\n"
        "from app.cli import main\n"
        "with contextlib.redirect_stderr(io.StringIO()) as err:\n"
        "    rc = main(['registry', 'list'])\n"
        "print(rc, err.getvalue().strip())\n"
        "print(sorted({'tensorflow', 'keras', 'prefect'} & set(sys.modules)))\n"
    )
    env = {**os.environ, "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}"}
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=120,
    )
    status, loaded = out.stdout.strip().splitlines()
    expected = "1 mnist: error: registered model 'mnist-cnn' does not exist"
    assert status.startswith(expected), out.stderr
    assert loaded == "[]"


def test_serve_binds_loopback_unless_told(monkeypatch):
    from app.cli import _settings, parser
    from mnist.settings import ServeSettings

    assert _settings(parser().parse_args(["serve"]), ServeSettings).host == "127.0.0.1"
    monkeypatch.setenv("MNIST_SERVE_HOST", "0.0.0.0")
    assert _settings(parser().parse_args(["serve"]), ServeSettings).host == "0.0.0.0"
    args = parser().parse_args(["serve", "--host", "::1", "--port", "9"])
    assert _settings(args, ServeSettings).model_dump(include={"host", "port"}) == {
        "host": "::1",
        "port": 9,
    }
