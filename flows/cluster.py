"""The Dask cluster a flow's tasks run on (`prefect-dask`'s `DaskTaskRunner`): a scheduler
started anywhere (`dask scheduler`, `dask worker`), or a local cluster of this machine."""

from __future__ import annotations

import os

from prefect_dask.task_runners import DaskTaskRunner


def task_runner(address: str | None, workers: int | None = None) -> DaskTaskRunner:
    """The scheduler at `address`, else a local cluster of `workers` single-threaded worker
    processes (default: one per core; TensorFlow's threads would otherwise fight over them),
    on loopback, its HTTP server (dashboard, health) on a free port so that two flows on one
    machine do not meet on 8787."""
    if address:
        return DaskTaskRunner(address=address)
    kwargs = {"n_workers": workers or os.cpu_count() or 1, "threads_per_worker": 1}
    return DaskTaskRunner(cluster_kwargs=kwargs | {"processes": True, "dashboard_address": ":0"})


def workers_of(runner: DaskTaskRunner) -> int:
    """How many workers the started runner's cluster has now (at least 1)."""
    return max(1, len(runner.client.scheduler_info().get("workers", {})))
