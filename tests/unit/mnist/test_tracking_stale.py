"""`mnist.tracking.stale`: a run whose process is gone, or whose flow run is over, is found and
closed saying why; a run whose process still runs is left alone."""

from __future__ import annotations

import subprocess

from mnist.tracking import Run, client, fail_stale_runs, stale_runs


def _dead_pid() -> str:
    proc = subprocess.Popen(["true"])
    proc.wait()
    return str(proc.pid)


def test_runs_of_dead_processes_and_ended_flow_runs_are_closed(store):
    alive = Run.start("stale", "alive", {})
    dead = Run.start("stale", "dead", {})
    dead.set_tags({"mnist.pid": _dead_pid()})
    elsewhere = Run.start("stale", "elsewhere", {"prefect.flow_run_id": "fr-1"})
    elsewhere.set_tags({"mnist.host": "another-host"})
    running = Run.start("stale", "running-elsewhere", {"prefect.flow_run_id": "fr-2"})
    running.set_tags({"mnist.host": "another-host"})
    asked: list[list[str]] = []

    def ended(flow_run_ids: list[str]) -> dict[str, str]:
        asked.append(sorted(flow_run_ids))
        return {"fr-1": "COMPLETED"}

    found = {run.run_id: run for run in stale_runs([alive.experiment_id], ended)}
    assert asked == [["fr-1", "fr-2"]]
    assert set(found) == {dead.run_id, elsewhere.run_id}
    assert found[dead.run_id].here and f"pid {_tag(dead, 'mnist.pid')}" in found[dead.run_id].reason
    assert not found[elsewhere.run_id].here and "ended COMPLETED" in found[elsewhere.run_id].reason

    assert fail_stale_runs(list(found.values())) == list(found.values())
    status = {r: client().get_run(r).info.status for r in found}
    assert status == {dead.run_id: "FAILED", elsewhere.run_id: "FINISHED"}
    assert "ended without closing it" in _tag(dead, "mnist.failure")
    assert client().get_run(alive.run_id).info.status == "RUNNING"
    assert stale_runs([alive.experiment_id]) == []


def _tag(run: Run, key: str) -> str:
    return client().get_run(run.run_id).data.tags[key]
