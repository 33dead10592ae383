"""Stale runs: MLflow runs left RUNNING by a process that is gone, found and closed.

Each run is tagged with the process that owns it (host, PID namespace, pid and its start time),
so a later process on the same host can tell that the owner died; a run that ran elsewhere is
stale once its Prefect flow run is over (the caller says which are).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from mnist.tracking.store import call, client


def _started(pid: int) -> str:
    """When process `pid` started (clock ticks since boot), to tell it from a later process
    that reuses its pid; empty where /proc is not there."""
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19]
    except (OSError, IndexError):
        return ""


def _pid_namespace() -> str:
    """This process's PID namespace: containers sharing a host name do not share it."""
    try:
        return os.readlink("/proc/self/ns/pid")
    except OSError:
        return ""


def owner() -> dict[str, str]:
    """Tags naming the process that owns a run (this one), for `stale_runs`."""
    pid = os.getpid()
    return {
        "mnist.host": socket.gethostname(),
        "mnist.pidns": _pid_namespace(),
        "mnist.pid": str(pid),
        "mnist.pid_started": _started(pid),
    }


def alive(tags: dict[str, str]) -> bool:
    """Whether the process that owns a run (from its `owner` tags) still runs."""
    try:
        pid = int(tags["mnist.pid"])
        os.kill(pid, 0)
    except (KeyError, ValueError, ProcessLookupError):
        return False
    except PermissionError:  # someone else's live process
        return True
    return _started(pid) == tags.get("mnist.pid_started", "")


@dataclass(frozen=True)
class StaleRun:
    """A run left RUNNING by a process that is gone, and why we know it is."""

    run_id: str
    experiment_id: str
    name: str
    pid: str
    flow_run_id: str
    flow_state: str = ""  # the final state of its Prefect flow run, when that told us

    @property
    def here(self) -> bool:
        """Found by its process on this host, not by its flow run: that flow run (if any)
        still needs closing."""
        return not self.flow_state

    @property
    def reason(self) -> str:
        if self.flow_state:
            return f"its Prefect flow run ended {self.flow_state}; marked by mnist"
        return f"its process (pid {self.pid}) ended without closing it; marked by mnist"


def stale_runs(
    experiment_ids: list[str] | None = None,
    ended: Callable[[list[str]], dict[str, str]] | None = None,
) -> list[StaleRun]:
    """RUNNING runs whose process is gone: started on this host by a process that no longer
    runs, or, wherever they ran, whose Prefect flow run is over (`ended` maps the flow run ids
    it is given to the final states of those that are over)."""
    if experiment_ids is None:
        experiment_ids = [e.experiment_id for e in call(client().search_experiments)]
    if not experiment_ids:
        return []
    runs = call(
        client().search_runs, experiment_ids, "attributes.status = 'RUNNING'", max_results=10000
    )
    host, pidns = socket.gethostname(), _pid_namespace()
    stale, elsewhere = [], []
    for r in runs:
        tags = r.data.tags
        run = StaleRun(
            r.info.run_id,
            r.info.experiment_id,
            r.info.run_name or "",
            tags.get("mnist.pid", ""),
            tags.get("prefect.flow_run_id", ""),
        )
        if tags.get("mnist.host") == host and tags.get("mnist.pidns") == pidns:
            if not alive(tags):
                stale.append(run)
        elif run.flow_run_id:
            elsewhere.append(run)
    if ended and elsewhere:
        states = ended([run.flow_run_id for run in elsewhere])
        stale += [
            replace(run, flow_state=states[run.flow_run_id])
            for run in elsewhere
            if run.flow_run_id in states
        ]
    return stale


def fail_stale_runs(stale: list[StaleRun] | None = None) -> list[StaleRun]:
    """Close stale runs (by default every one, `stale_runs()`) saying why: FINISHED when their
    flow run completed, else FAILED; returns them. Close their Prefect flow runs first: their
    ids are not looked for again."""
    stale = stale_runs() if stale is None else stale
    for run in stale:
        call(client().set_tag, run.run_id, "mnist.failure", run.reason)
        status = "FINISHED" if run.flow_state == "COMPLETED" else "FAILED"
        call(client().set_terminated, run.run_id, status)
    return stale
