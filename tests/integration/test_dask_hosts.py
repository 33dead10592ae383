"""`mnist sweep` with its Dask workers on two other hosts, set up as the guide's "Workers on
other machines" says: each worker on a host of its own (a network namespace: its own
loopback and ports), reaching this host only at its bridge address, where the Dask
scheduler, the Prefect and MLflow servers and PostgreSQL (the study's storage) listen.
Nothing but the file system is shared: the project and MNIST, as on machines that both
have them. Needs root, for `ip netns` (`tests/netns.py`)."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import optuna
import pytest
from mlflow import MlflowClient

from tests import netns
from tests.servers import (
    Postgres,
    free_port,
    mlflow_spec,
    prefect_spec,
    server_url,
    start_servers,
    stop_server,
)

pytestmark = [pytest.mark.slow, pytest.mark.skipif(bool(netns.missing()), reason="no netns")]

BIN = Path(sys.executable).parent
WORKER_PORT, HEALTH_PORT = 8788, 8789
"""The same ports on each host: they are other hosts."""


@dataclass
class Site:
    hosts: netns.Hosts
    scheduler: str
    prefect_api: str
    mlflow: str
    storage: str
    """The study's, at this host's bridge address: as the workers reach it."""
    workers: dict[str, int]  # each worker's address: its process id


@pytest.fixture(scope="module")
def site(tmp_path_factory) -> Iterator[Site]:
    """Two worker hosts, and on this one (at its bridge address) a `dask scheduler`, `prefect
    server`, `mlflow server` and PostgreSQL."""
    root = tmp_path_factory.mktemp("hosts")
    with netns.hosts(2) as hosts:
        head = hosts.head
        database = Postgres(also_on=head)
        procs: list[subprocess.Popen] = []
        try:
            port, health = free_port(), free_port()
            scheduler = [str(BIN / "dask"), "scheduler", "--host", head, "--port", str(port)]
            scheduler += ["--dashboard-address", f"{head}:{health}"]
            prefect = prefect_spec(root / "prefect", head)
            mlflow = mlflow_spec(root / "mlflow", head)
            (root / "prefect").mkdir()
            (root / "mlflow").mkdir()
            specs = [
                (scheduler, f"http://{head}:{health}/health", root / "scheduler.log", {}),
                prefect,
                mlflow,
            ]
            procs += start_servers(*specs)
            address = f"tcp://{head}:{port}"
            workers = []
            for host, ip in hosts.addresses.items():
                args = [str(BIN / "dask"), "worker", address, "--nthreads", "1", "--no-nanny"]
                args += ["--host", ip, "--worker-port", str(WORKER_PORT)]
                args += ["--dashboard-address", f"{ip}:{HEALTH_PORT}"]
                log = root / f"worker-{host}.log"
                workers.append((hosts.on(host, args), f"http://{ip}:{HEALTH_PORT}/health", log, {}))
            started = start_servers(*workers)
            procs += started
            yield Site(
                hosts,
                address,
                f"{server_url(prefect)}/api",
                server_url(mlflow),
                database.url("sweeps", "psycopg").replace("127.0.0.1", head),
                {
                    f"tcp://{ip}:{WORKER_PORT}": p.pid
                    for ip, p in zip(hosts.addresses.values(), started, strict=True)
                },
            )
        finally:
            for proc in reversed(procs):
                stop_server(proc)
            database.close()


def test_a_sweep_trains_on_workers_on_two_other_hosts(site, tmp_path, mnist_path):
    env = {
        **os.environ,
        "MLFLOW_TRACKING_URI": site.mlflow,
        "PREFECT_API_URL": site.prefect_api,
        "MNIST_DATA_DIR": str(mnist_path),
    }
    args = ["sweep", "--dask-address", site.scheduler, "--storage", site.storage]
    args += ["--trials", "4", "--name", "hosts", "--registered-model", "hosted"]
    args += ["--model", "small", "--epochs", "2", "--train-limit", "600", "--test-limit", "300"]
    out = subprocess.run(
        [str(BIN / "mnist"), *args],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stderr[-3000:]

    for address, pid in site.workers.items():  # each worker is on its own host
        host = subprocess.run(["ip", "netns", "identify", str(pid)], capture_output=True, text=True)
        assert site.hosts.addresses[host.stdout.strip()] in address
    client = MlflowClient(site.mlflow)
    runs = client.search_runs(
        [e.experiment_id for e in client.search_experiments()], "tags.`sweep.study` = 'hosts'"
    )
    trials = [r for r in runs if r.data.tags.get("sweep.role") != "parent"]
    assert len(trials) == 4 and {r.info.status for r in trials} == {"FINISHED"}
    assert {r.data.tags["dask.worker"] for r in trials} == set(site.workers)  # both hosts ran some
    study = optuna.load_study(study_name="hosts", storage=site.storage)
    assert len(study.trials) == 4 and all(t.state.is_finished() for t in study.trials)
    [version] = client.search_model_versions("name = 'hosted'")
    assert version.run_id == study.best_trial.user_attrs["run_id"]
