"""`mnist sweep` and `mnist ensemble` on a real Dask cluster: a `dask scheduler` and `dask
worker` processes on 127.0.0.1, the session's Prefect API, a SQLite MLflow store and study
storage. A sweep runs its trials on both workers, each in a nested MLflow run, and registers
the best trial's model; a worker killed mid-trial costs the sweep nothing; a driver killed with
kill -9 is resumed without repeating its finished trials. An ensemble of two is one registered
version that `mnist predict` and `mnist serve` use as any other."""

from __future__ import annotations

import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import httpx
import numpy as np
import optuna
import pytest
from mlflow import MlflowClient
from PIL import Image

from mnist.waiting import exited, wait_until
from tests.servers import free_port, start_server, stop_server

pytestmark = pytest.mark.slow

BIN = Path(sys.executable).parent
TINY = ["--model", "small", "--epochs", "2", "--train-limit", "600", "--test-limit", "300"]
"""Trials of a few seconds: what is tested is the sweep, not the models."""


@dataclass
class Cluster:
    address: str
    workers: dict[str, subprocess.Popen]  # by address
    root: Path

    def add_worker(self) -> str:
        """One more `dask worker` process (no nanny: killing it kills the worker)."""
        port, health = free_port(), free_port()
        args = [str(BIN / "dask"), "worker", self.address, "--nthreads", "1", "--no-nanny"]
        args += ["--host", "127.0.0.1", "--worker-port", str(port)]
        args += ["--dashboard-address", f"127.0.0.1:{health}"]
        log = self.root / f"worker-{port}.log"
        proc = start_server(args, f"http://127.0.0.1:{health}/health", log, {})
        address = f"tcp://127.0.0.1:{port}"
        self.workers[address] = proc
        return address


@pytest.fixture(scope="module")
def cluster(tmp_path_factory) -> Iterator[Cluster]:
    """A `dask scheduler` and two `dask worker` processes, each single-threaded."""
    root = tmp_path_factory.mktemp("dask")
    port, health = free_port(), free_port()
    args = [str(BIN / "dask"), "scheduler", "--host", "127.0.0.1", "--port", str(port)]
    args += ["--dashboard-address", f"127.0.0.1:{health}"]
    scheduler = start_server(args, f"http://127.0.0.1:{health}/health", root / "sched.log", {})
    found = Cluster(f"tcp://127.0.0.1:{port}", {}, root)
    try:
        found.add_worker()
        found.add_worker()
        yield found
    finally:
        for proc in found.workers.values():
            if proc.poll() is None:
                stop_server(proc)
        stop_server(scheduler)


@pytest.fixture
def env(tmp_path, prefect_api_url, mnist_path) -> dict[str, str]:
    """A fresh SQLite MLflow store (and the study storage beside it) for one test."""
    return {
        **os.environ,
        "MLFLOW_TRACKING_URI": f"sqlite:///{tmp_path / 'mlflow.db'}",
        "PREFECT_API_URL": prefect_api_url,
        "MNIST_DATA_DIR": str(mnist_path),
    }


def _mnist(args: list[str], env: dict[str, str], cwd: Path, timeout: float = 600):
    return subprocess.run(
        [str(BIN / "mnist"), *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _runs(env: dict[str, str], study: str) -> tuple[object, list]:
    """The sweep's parent run and its trials' runs."""
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()],
        f"tags.`sweep.study` = '{study}'",
    )
    [parent] = [r for r in runs if r.data.tags.get("sweep.role") == "parent"]
    return parent, [r for r in runs if r.data.tags.get("mlflow.parentRunId") == parent.info.run_id]


def _study(tmp_path: Path, name: str) -> optuna.Study:
    return optuna.load_study(study_name=name, storage=f"sqlite:///{tmp_path / 'mnist-sweeps.db'}")


def test_a_sweep_runs_on_both_workers_and_registers_its_best_trial(cluster, env, tmp_path):
    args = ["--dask-address", cluster.address, "--trials", "4", "--name", "two-workers"]
    out = _mnist(["sweep", *args, *TINY, "--registered-model", "swept"], env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert "best trial:" in out.stdout

    parent, trials = _runs(env, "two-workers")
    assert parent.info.status == "FINISHED"
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    assert {r.data.tags["sweep.trial"] for r in trials} == {"0", "1", "2", "3"}
    assert {r.data.tags["sweep.trial_state"] for r in trials} <= {"complete", "pruned"}
    assert {r.data.tags["dask.worker"] for r in trials} == set(cluster.workers)  # both ran some
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    for run in trials:
        assert run.data.params["model"] == "small"
        steps = [m.step for m in client.get_metric_history(run.info.run_id, "val_accuracy")]
        assert steps and steps == list(range(1, len(steps) + 1))
    plots = {a.path for a in client.list_artifacts(parent.info.run_id, "optuna")}
    assert {"optuna/optimization_history.png", "optuna/parallel_coordinate.png"} <= plots

    study = _study(tmp_path, "two-workers")
    assert len(study.trials) == 4
    best = study.best_trial
    [version] = client.search_model_versions("name = 'swept'")
    assert version.tags["sweep"] == "two-workers"
    assert version.tags["sweep_trial"] == str(best.number)
    assert version.run_id == best.user_attrs["run_id"] == parent.data.tags["sweep.best_run"]
    assert float(version.tags["test_accuracy"]) > 0.5


def test_a_worker_killed_mid_trial_costs_the_sweep_nothing(cluster, env, tmp_path):
    doomed = cluster.add_worker()
    args = ["--dask-address", cluster.address, "--trials", "3", "--name", "lost-worker"]
    slow = ["--model", "small", "--epochs", "6", "--train-limit", "3000", "--test-limit", "300"]
    driver = subprocess.Popen(
        [str(BIN / "mnist"), "sweep", *args, *slow, "--no-register"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])

        def on_doomed() -> bool:
            runs = client.search_runs(
                [e.experiment_id for e in client.search_experiments()],
                f"tags.`dask.worker` = '{doomed}' and attributes.status = 'RUNNING'",
            )
            return bool(runs)

        wait_until(on_doomed, 300, 0.5, exited(driver))
        killed = cluster.workers.pop(doomed)  # gone: not a worker of the other tests
        killed.kill()
        killed.wait()
        err = driver.communicate(timeout=600)[1]
    finally:
        if driver.poll() is None:
            driver.kill()
    assert driver.returncode == 0, err[-3000:]
    study = _study(tmp_path, "lost-worker")
    assert [t.state.name for t in study.trials].count("RUNNING") == 0
    assert len(study.trials) == 3  # the lost trial ran again, as the same trial
    _, trials = _runs(env, "lost-worker")
    lost = [r for r in trials if r.data.tags.get("dask.worker") == doomed]
    assert lost and all(r.info.status == "FAILED" for r in lost)
    assert all(r.data.tags["sweep.trial_state"].startswith("lost") for r in lost)
    assert {r.info.status for r in trials if r not in lost} == {"FINISHED"}


def test_a_killed_driver_resumes_without_repeating_finished_trials(cluster, env, tmp_path):
    args = ["--dask-address", cluster.address, "--trials", "5", "--name", "resumed"]
    driver = subprocess.Popen(
        [str(BIN / "mnist"), "sweep", *args, *TINY, "--no-register"],
        cwd=tmp_path,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:

        def two_done() -> list[int] | None:
            """Read-only, with sqlite3: Optuna's storage would make its tables, at the same
            time as the driver makes them."""
            query = "SELECT number FROM trials WHERE state IN ('COMPLETE', 'PRUNED', 'FAIL')"
            try:
                file = f"file:{tmp_path / 'mnist-sweeps.db'}?mode=ro"
                with contextlib.closing(sqlite3.connect(file, uri=True)) as db:
                    done = [number for (number,) in db.execute(query)]
            except sqlite3.OperationalError:  # no file or no tables yet
                return None
            return done if len(done) >= 2 else None

        before = wait_until(two_done, 300, 0.5, exited(driver))
        driver.send_signal(signal.SIGKILL)
        driver.wait(timeout=10)
    finally:
        if driver.poll() is None:
            driver.kill()
    values = {t.number: t.value for t in _study(tmp_path, "resumed").trials if t.number in before}

    started = time.monotonic()
    out = _mnist(["sweep", "--resume", "resumed", "--dask-address", cluster.address], env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    study = _study(tmp_path, "resumed")
    counted = [t for t in study.trials if not t.user_attrs.get("reclaimed")]
    assert len(counted) == 5 and all(t.state.is_finished() for t in study.trials)
    assert {t.number: t.value for t in study.trials if t.number in before} == values
    _, trials = _runs(env, "resumed")
    runs_of = [r.data.tags["sweep.trial"] for r in trials]
    assert all(runs_of.count(str(n)) == 1 for n in before)  # none trained twice
    print(f"\nresumed in {time.monotonic() - started:.1f} s after {len(before)} finished trials")

    def nothing_running() -> bool:  # a trial the killed driver left on a worker ends there
        return {r.info.status for r in _runs(env, "resumed")[1]} <= {"FINISHED", "FAILED"}

    wait_until(nothing_running, 120, 1)
    again = _mnist(["sweep", "--resume", "resumed"], env, tmp_path, timeout=60)
    assert again.returncode == 2 and "is finished" in again.stderr.strip(), again.stderr


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--dask-address", "tcp://127.0.0.1:{port}"], "--dask-address"),
        (["--space", "{bad_option}"], "unknown option(s) dropout"),
        (["--space", "{empty_range}"], "empty range"),
        (["--resume", "never-started"], "no study named 'never-started'"),
    ],
    ids=["unreachable-scheduler", "unknown-option", "empty-range", "unknown-study"],
)
def test_bad_input_is_one_line_and_makes_nothing(args, message, env, tmp_path):
    (tmp_path / "bad.toml").write_text('base = "fast"\n[params.dropout]\nlow = 0.1\nhigh = 0.5\n')
    (tmp_path / "empty.toml").write_text('base = "fast"\n[params.epochs]\nlow = 3\nhigh = 3\n')
    fill = {"port": free_port(), "bad_option": "bad.toml", "empty_range": "empty.toml"}
    started = time.monotonic()
    out = _mnist(["sweep", *(a.format(**fill) for a in args)], env, tmp_path, timeout=60)
    assert out.returncode in (1, 2)
    assert time.monotonic() - started < 10
    [line] = out.stderr.strip().splitlines()
    assert line.startswith("mnist: error:") and message in line, line
    if (tmp_path / "mlflow.db").exists():
        client = MlflowClient(env["MLFLOW_TRACKING_URI"])
        assert not client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert not (tmp_path / "mnist-sweeps.db").exists()


def test_an_ensemble_of_two_is_one_version_that_predicts_and_serves(
    cluster, env, tmp_path, mnist_data
):
    args = ["--dask-address", cluster.address, "--members", "2", "--seeds", "7,8"]
    out = _mnist(["ensemble", *args, *TINY, "--registered-model", "pair"], env, tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    client = MlflowClient(env["MLFLOW_TRACKING_URI"])
    [version] = client.search_model_versions("name = 'pair'")
    members = version.tags["ensemble.members"].split(",")
    assert len(members) == 2
    for run_id, seed in zip(members, ("7", "8"), strict=True):
        run = client.get_run(run_id)
        assert run.info.status == "FINISHED" and run.data.params["seed"] == seed
        assert run.data.tags["mlflow.parentRunId"] == version.run_id
        assert run.data.tags["dask.worker"] in cluster.workers
        assert run_id in version.description  # the card names its members' runs
    info = mlflow_model_info(version.source, env)
    assert tuple(info.signature.inputs.to_dict()[0]["tensor-spec"]["shape"]) == (-1, 28, 28)

    paths = []
    for i in range(20):
        paths.append(tmp_path / f"digit{i}.png")
        Image.fromarray(mnist_data.test.images[i]).save(paths[-1])
    predicted = _mnist(["predict", "--model", "models:/pair/1", *map(str, paths)], env, tmp_path)
    assert predicted.returncode == 0, predicted.stderr[-2000:]
    digits = [int(line.split()[1]) for line in predicted.stdout.splitlines()[1:]]
    assert np.mean(np.array(digits) == mnist_data.test.labels[:20]) >= 0.6, digits

    port = free_port()
    command = [str(BIN / "mnist"), "serve", "--model", "models:/pair/1", "--port", str(port)]
    command += ["--datastore", f"sqlite:///{tmp_path / 'served.db'}"]
    health = f"http://127.0.0.1:{port}/healthz"
    server = start_server(command, health, tmp_path / "serve.log", env)
    try:
        body = {"pixels": mnist_data.test.images[:20].tolist()}
        answer = httpx.post(f"http://127.0.0.1:{port}/predict", json=body, timeout=60)
    finally:
        stop_server(server)
    assert answer.status_code == 200, answer.text
    assert [p["digit"] for p in answer.json()["predictions"]] == digits


def mlflow_model_info(uri: str, env: dict[str, str]):
    import mlflow

    mlflow.set_tracking_uri(env["MLFLOW_TRACKING_URI"])
    try:
        return mlflow.models.get_model_info(uri)
    finally:
        mlflow.set_tracking_uri(None)
