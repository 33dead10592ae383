"""`mnist` commands as users run them: one-line errors, predictions on real digits, no heavy
imports for commands that need none."""

import os
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest
from PIL import Image

from app.cli import main

pytestmark = pytest.mark.slow  # real logged models and processes: not the unit tier


def _mnist(*args, env=None):
    return subprocess.run(
        [sys.executable, "-m", "app.cli", *args],
        capture_output=True,
        text=True,
        timeout=600,
        env={**os.environ, **(env or {})},
    )


def test_corrupt_data_fails_in_one_line_without_traceback(tmp_path, mnist_path, prefect_api_url):
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
        env={
            "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'm.db'}",
            "PREFECT_API_URL": prefect_api_url,  # the session's: no temporary API to start
        },
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


def test_the_flows_import_without_tensorflow():
    """What `prefect deploy` imports of each entrypoint, to read its parameters: the flows'
    modules load TensorFlow only when a task needs it (seconds off every deploy)."""
    probe = (
        "import sys\n"
        "import flows.monitor, flows.retrain, flows.training\n"
        "print(sorted({'tensorflow', 'keras'} & set(sys.modules)))\n"
    )
    out = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
