"""Retraining that learns something new, end to end: a champion that cannot read mirror
writing; `mnist data add` of a few hundred mirrored digits and feedback through a real
`mnist serve`; a retrain that reads them, judged on MNIST test and the added holdout, with
lineage in MLflow; an unchanged retrain that registers nothing; a removed batch out of the
next run; a warm start. Real Prefect API, SQLite MLflow store and added-data store."""

import os
import subprocess
import sys
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from prefect.client.orchestration import get_client

from flows.retrain import retrain_flow
from mnist import datastore, evaluation, preprocess, registry, tracking
from mnist.settings import GateSettings, TrainConfig
from tests.conftest import tracking_store
from tests.servers import free_port, start_server, stop_server
from tests.sources import SOURCE, mirror_writing

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
NAME = "loop-test"
ADDED = 300  # mirrored digits added with `mnist data add`
GATE = GateSettings(floor=0.95)


def _config(mnist_path, **overrides) -> TrainConfig:
    settings = dict(
        data_dir=mnist_path,
        profile="fast",
        train_limit=10000,
        test_limit=2000,
        experiment="loop",
        registered_model=NAME,
        seed=0,
    )
    return TrainConfig(**(settings | overrides))


def _accuracy(ref: str, images: np.ndarray, labels: np.ndarray) -> float:
    model = tracking.load_model(ref)
    return evaluation.evaluate(
        model, preprocess.Arrays(images, preprocess.one_hot(labels))
    ).accuracy


def _retrain(config: TrainConfig):
    state = retrain_flow(config, GATE, return_state=True)
    with get_client(sync_client=True) as client:
        artifacts = client.read_artifacts()
    mine = [a for a in artifacts if a.flow_run_id == state.state_details.flow_run_id]
    return state.result(), {a.key: a.data for a in mine}


def _mnist(*args: str, cwd: Path) -> str:
    proc = subprocess.run(
        [str(BIN / "mnist"), *args],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=cwd,
        env=os.environ.copy(),
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


@pytest.fixture(scope="module")
def loop(prefect_api, mnist_data, mnist_path, tmp_path_factory):
    root = tmp_path_factory.mktemp("loop")
    judged_on = mirror_writing(mnist_data, 0, 500)  # never added: the champions' exam
    added = mirror_writing(mnist_data, 500, ADDED)
    sent = mirror_writing(mnist_data, 500 + ADDED, 60)  # through POST /feedback
    with tracking_store(root):
        first, _ = _retrain(_config(mnist_path))
        before = _accuracy(f"models:/{NAME}@champion", *judged_on)

        np.savez(root / "mirror.npz", x=added[0], y=added[1])
        added_out = _mnist("data", "add", str(root / "mirror.npz"), "--source", SOURCE, cwd=root)
        port = free_port()
        server = start_server(
            [
                str(BIN / "mnist"),
                "serve",
                "--model",
                f"models:/{NAME}@champion",
                "--port",
                str(port),
                "--feedback-per-minute",
                "100",
            ],
            f"http://127.0.0.1:{port}/healthz",
            root / "serve.log",
            {"MNIST_SERVE_FEEDBACK_TOKEN": "loop-token-for-the-test"},  # trusted: it trains at once
        )
        try:
            stored = [
                httpx.post(
                    f"http://127.0.0.1:{port}/feedback",
                    json={"pixels": x.tolist(), "label": int(y)},
                    headers={"Authorization": "Bearer loop-token-for-the-test"},
                ).json()
                for x, y in zip(*sent, strict=True)
            ]
        finally:
            stop_server(server)
        snapshot = datastore.Store().snapshot()

        second, second_artifacts = _retrain(_config(mnist_path))
        after = _accuracy(f"models:/{NAME}@champion", *judged_on)
        versions = len(registry.versions(NAME))
        third, third_artifacts = _retrain(_config(mnist_path))
        versions_after_third = len(registry.versions(NAME))
        warm, _ = _retrain(_config(mnist_path, init_from=f"models:/{NAME}@champion"))

        _mnist("data", "remove", "1", cwd=root)
        fourth, _ = _retrain(_config(mnist_path, init_from=f"models:/{NAME}@champion"))
        runs = {
            r.info.run_id: r
            for r in mlflow.search_runs(experiment_names=["loop"], output_format="list")
        }
        yield dict(
            first=first,
            second=second,
            third=third,
            warm=warm,
            fourth=fourth,
            before=before,
            after=after,
            added_out=added_out,
            stored=stored,
            snapshot=snapshot,
            runs=runs,
            root=root,
            versions=(versions, versions_after_third),
            artifacts=(second_artifacts, third_artifacts),
        )


def test_added_data_teaches_the_champion_the_new_handwriting(loop):
    assert f"added batch 1 ({SOURCE}): {ADDED} samples" in loop["added_out"]
    assert loop["before"] < 0.5  # the MNIST champion cannot read mirror writing
    assert loop["after"] >= loop["before"] + 0.3, (loop["before"], loop["after"])
    second = loop["second"]
    assert second.decision.promote, second.decision.reason
    assert second.training.test_accuracy >= GATE.floor
    assert "holdout" in second.decision.reason and "test" in second.decision.reason
    print(
        f"\nmirror writing, 500 held-out images: champion before {loop['before']:.4f}, "
        f"after {ADDED} added samples {loop['after']:.4f}; MNIST test "
        f"{loop['first'].training.test_accuracy:.4f} -> {second.training.test_accuracy:.4f}; "
        f"gate: {second.decision.reason}"
    )


def test_feedback_through_a_real_server_is_in_the_next_training(loop):
    stored = loop["stored"]
    assert len(stored) == 60 and all(s["batch"] == 2 for s in stored), stored
    run = loop["runs"][loop["second"].training.run_id]
    assert run.data.tags["added_batches"] == "1,2"
    assert run.data.tags["added_data_digest"] == loop["snapshot"].digest
    metrics = run.data.metrics
    assert metrics["holdout_samples"] == len(loop["snapshot"].holdout) > 50
    assert {f"holdout_accuracy.{SOURCE}", "holdout_accuracy.feedback"} <= set(metrics)


def test_every_run_lists_its_datasets_with_digests(loop, mnist_data):
    run = loop["runs"][loop["second"].training.run_id]
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert set(inputs) == {"mnist-train", "mnist-test", "added-train", "added-holdout"}
    tags = {name: {t.key: t.value for t in i.tags} for name, i in inputs.items()}
    assert tags["mnist-train"]["mlflow.data.context"] == "training"
    assert tags["added-holdout"]["mlflow.data.context"] == "evaluation"
    assert tags["added-train"]["digest"] == loop["snapshot"].digest
    assert inputs["added-train"].dataset.digest == loop["snapshot"].digest[:32]
    limited = mnist_data.train.images[:10000], mnist_data.train.labels[:10000]
    from mnist.data import digest

    assert tags["mnist-train"]["digest"] == digest(*limited)
    version = registry.get(NAME, loop["second"].training.model_version)
    assert version.tags["added_data_digest"] == loop["snapshot"].digest
    assert float(version.tags["holdout_accuracy"]) == pytest.approx(
        loop["second"].training.holdout_accuracy, abs=1e-4
    )
    artifacts = loop["root"] / "mlruns"
    assert list(artifacts.glob(f"*/{run.info.run_id}/artifacts/classification_report_holdout.csv"))
    assert list(artifacts.glob(f"*/{run.info.run_id}/artifacts/plots/confusion_matrix_holdout.png"))
    assert "added-data holdout accuracy" in loop["artifacts"][0]["retrain-decision"]
    assert "holdout-per-class-metrics" in loop["artifacts"][0]


def test_unchanged_inputs_register_nothing(loop):
    third = loop["third"]
    assert third.unchanged is not None and third.unchanged.version == "2"
    assert third.training is None
    assert loop["versions"][0] == loop["versions"][1] == 2
    assert "nothing new since loop-test v2" in loop["artifacts"][1]["retrain-decision"]


def test_a_warm_start_fine_tunes_the_champion(loop):
    warm = loop["warm"]
    run = loop["runs"][warm.training.run_id]
    assert run.data.params["init_from"] == f"models:/{NAME}@champion"
    assert run.data.tags["warm_start"] == f"models:/{NAME}/2"  # the version the alias named
    history = mlflow.MlflowClient().get_metric_history(run.info.run_id, "accuracy")
    assert len(history) == TrainConfig().finetune_epochs  # the fine-tuning recipe's epochs
    assert warm.training.test_accuracy >= GATE.floor


def test_a_removed_batch_is_out_of_the_next_run_and_of_its_start(loop):
    fourth = loop["fourth"]
    run = loop["runs"][fourth.training.run_id]
    assert run.data.tags["added_batches"] == "2"
    assert run.data.tags["added_data_digest"] != loop["snapshot"].digest
    inputs = {i.dataset.name: i for i in run.inputs.dataset_inputs}
    assert '"batches": "2"' in inputs["added-train"].dataset.source  # the store and batches
    assert f"holdout_accuracy.{SOURCE}" not in run.data.metrics
    # The champion learnt from the removed batch: no warm start from it, a fresh model.
    assert run.data.tags["warm_start"].startswith("none: models:/loop-test/")
    assert "learnt from batch(es) [1], since removed" in run.data.tags["warm_start"]
