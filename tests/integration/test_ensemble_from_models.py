"""`mnist ensemble --from-models`: models trained before, by `mnist train`, registered as one
version that averages them, with their recipe, seeds and runs; wrong references are one line
and make nothing. Real commands, the session's Prefect API, a SQLite MLflow store."""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from mlflow import MlflowClient
from PIL import Image

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TINY = ["--profile", "fast", "--test-limit", "300", "--no-added-data"]


def _mnist(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 300):
    return subprocess.run(
        [str(BIN / "mnist"), *args], cwd=cwd, env=env, capture_output=True, text=True,
        timeout=timeout,
    )  # fmt: skip


@pytest.fixture(scope="module")
def trained(tmp_path_factory, prefect_api_url, mnist_path) -> tuple[dict[str, str], Path]:
    """Versions 1 and 2 of `solo`: one recipe and split, seeds 1 and 2; version 3: another
    recipe (3 epochs) on other data (500 images), seed 3."""
    root = tmp_path_factory.mktemp("from-models")
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{root / 'mlflow.db'}",
        "PREFECT_API_URL": prefect_api_url,
        "MNIST_DATA_DIR": str(mnist_path),
    }
    for seed, epochs, images in ((1, "2", "600"), (2, "2", "600"), (3, "3", "500")):
        args = ["train", *TINY, "--epochs", epochs, "--train-limit", images, "--seed", str(seed)]
        out = _mnist([*args, "--registered-model", "solo"], env, root)
        assert out.returncode == 0, out.stderr[-3000:]
    MlflowClient(env["MLFLOW_TRACKING_URI"]).set_registered_model_alias("solo", "first", "1")
    return env, root


def _runs(env: dict[str, str]) -> int:
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    return len(client.search_runs([e.experiment_id for e in client.search_experiments()]))


def test_models_trained_before_become_one_version_of_their_recipe(trained, mnist_data):
    env, root = trained
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    solo = {str(v.version): v for v in client.search_model_versions("name = 'solo'")}
    refs = f"models:/solo/1,runs:/{solo['2'].run_id}/model"
    args = ["ensemble", "--from-models", refs, "--test-limit", "300", "--registered-model", "pair"]
    out = _mnist(args, env, root)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "members:        2: models:/solo/1, runs:/" in out.stdout

    [version] = client.search_model_versions("name = 'pair'")
    members = [str(solo["1"].run_id), str(solo["2"].run_id)]
    assert version.tags["ensemble.members"] == ",".join(members)
    assert all(m in str(version.description) for m in members)  # the card names its members' runs
    run = client.get_run(str(version.run_id))
    assert run.data.tags["ensemble.seeds"] == "1,2"
    assert run.data.tags["ensemble.models"].startswith("models:/solo/1,runs:/")
    # the members' recipe and data, the first one's seed; not the command's defaults
    params = run.data.params
    assert (params["profile"], params["model"], params["epochs"]) == ("fast", "small", "2")
    assert (params["train_limit"], params["seed"]) == ("600", "1")
    # its inputs are its members: never taken for a single run of the same recipe and seed
    digest = hashlib.sha256(f"ensemble:{','.join(members)}".encode()).hexdigest()
    assert version.tags["inputs_digest"] == run.data.tags["inputs_digest"] == digest

    paths = []
    for i in range(20):
        paths.append(root / f"digit{i}.png")
        Image.fromarray(mnist_data.test.images[i]).save(paths[-1])
    predicted = _mnist(["predict", "--model", "models:/pair/1", *map(str, paths)], env, root)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    digits = [int(line.split()[1]) for line in predicted.stdout.splitlines()[1:]]
    assert np.mean(np.array(digits) == mnist_data.test.labels[:20]) >= 0.6, digits

    again = _mnist(["ensemble", "--from-models", "models:/pair/1,models:/solo/1"], env, root)
    assert again.returncode == 1
    assert again.stderr.strip() == (
        "mnist: error: models:/pair/1: an ensemble already; name its members' models instead"
    )


@pytest.mark.parametrize(
    ("refs", "message"),
    [
        (
            "models:/solo/1,models:/solo/3",
            "differ in recipe or data (epochs: 2, 3; train_limit: 600, 500)",
        ),
        ("models:/solo/1,models:/solo@first", "the same model as another member"),
        ("models:/solo/1,{root}/model.keras", "not traceable to the run that made it"),
        ("models:/solo/1,models:/solo/9", "has no version 9"),
        ("models:/solo/1", "give 2 to 10 different model references"),
    ],
    ids=["two-recipes", "same-model", "untraceable-file", "unknown-version", "one-model"],
)
def test_wrong_members_are_one_line_and_make_nothing(refs, message, trained):
    env, root = trained
    (root / "model.keras").write_bytes(b"not a model")
    before = _runs(env)
    args = ["ensemble", "--from-models", refs.format(root=root), "--registered-model", "bad"]
    out = _mnist(args, env, root, timeout=120)
    assert out.returncode in (1, 2)
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("mnist: error:") and message in line, line
    assert _runs(env) == before
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    assert not client.search_registered_models("name = 'bad'")
