"""The `champion` alias and its history: every move of the alias (a promotion by the gate, a
manual promote, a rollback) written as an event run in the experiment `<model>-champion-history`.

MLflow keeps no record of where an alias pointed before (mlflow#2169), so this append-only
audit log, readable from any client of the same tracking store, is what `rollback` and
`history` read back.
"""

from __future__ import annotations

import time

import mlflow
import pandas as pd

from mnist.errors import MnistError
from mnist.registry.versions import Version, champion, get, require_model, tag_version
from mnist.settings import CHAMPION, MODEL_NAME
from mnist.tracking import call, client, experiment_id


def _history_experiment(name: str) -> str:
    return f"{name}-champion-history"


def record(
    name: str,
    action: str,
    version: str | None,
    previous: str | None,
    reason: str,
    extra: dict[str, str] | None = None,
) -> None:
    """Append an event to the champion history (it is also kept as tags on the version)."""
    tags = {
        "event.action": action,
        "event.model": name,
        "event.version": version or "",
        "event.previous": previous or "",
        "event.reason": reason,
        "event.time_ns": str(time.time_ns()),
        **{f"event.{k}": v for k, v in (extra or {}).items()},
    }
    exp_id = experiment_id(_history_experiment(name))
    run = call(client().create_run, exp_id, run_name=f"{action}-v{version}", tags=tags)
    call(client().set_terminated, run.info.run_id)


def history(name: str = MODEL_NAME) -> pd.DataFrame:
    """Every recorded decision and alias move, oldest first."""
    exp = call(mlflow.get_experiment_by_name, _history_experiment(name))
    columns = ["time", "action", "version", "previous", "reason"]
    if exp is None:
        return pd.DataFrame(columns=columns)
    runs = call(client().search_runs, [exp.experiment_id], max_results=50000)
    rows = [
        {
            "time": pd.Timestamp(int(r.data.tags["event.time_ns"]), unit="ns", tz="UTC"),
            "action": r.data.tags["event.action"],
            "version": r.data.tags["event.version"],
            "previous": r.data.tags["event.previous"],
            "reason": r.data.tags["event.reason"],
        }
        for r in runs
    ]
    return pd.DataFrame(rows, columns=columns).sort_values("time", ignore_index=True)


PROMOTIONS = ("promoted", "promote")  # how a version gets the title (a rollback gives it back)


def set_champion(
    name: str, version: str, action: str, reason: str, extra: dict[str, str] | None = None
) -> Version | None:
    """Point `champion` at `version` and record the move; returns the previous champion.

    Crash-safe in three steps: the move is first written as tags on the version (whom it
    replaces, why, when), then the alias moves, then the history gets its event. A crash after
    the first step leaves the alias where it was; after the second, `repair_history` (run
    before every move and by `mnist doctor`) writes the missing event from the tags."""
    previous = champion(name)
    repair_history(name, previous)
    held_by = previous.version if previous else ""
    move = {
        "champion.action": action,
        "champion.from": held_by,
        "champion.reason": reason,
        "champion.time_ns": str(time.time_ns()),
    }
    if action in PROMOTIONS:  # whom a rollback from this version gives the title back to
        move["champion.previous"] = held_by
    tag_version(name, version, move)
    call(client().set_registered_model_alias, name, CHAMPION, version)
    record(name, action, version, previous.version if previous else None, reason, extra)
    return previous


def repair_history(name: str = MODEL_NAME, current: Version | None = None) -> bool:
    """Append the event of the current champion's promotion (`current`, looked up unless
    given) if a crash kept it out of the history; True if it did."""
    current = current or champion(name)
    if current is None or "champion.time_ns" not in current.tags:
        return False
    tags, events = current.tags, history(name)
    moved_at = pd.Timestamp(int(tags["champion.time_ns"]), unit="ns", tz="UTC")
    recorded = events[(events["version"] == current.version) & (events["time"] >= moved_at)]
    if len(recorded):
        return False
    record(
        name,
        tags["champion.action"],
        current.version,
        tags.get("champion.from") or None,
        f"{tags['champion.reason']} (recorded after a crash)",
    )
    return True


def promote(version: str, name: str = MODEL_NAME, reason: str = "promoted by hand") -> Version:
    """Make an existing version the champion."""
    target = get(name, version)
    current = champion(name)
    if current and current.version == target.version:
        raise MnistError(f"version {version} of {name!r} is already the champion")
    set_champion(name, target.version, "promote", reason)
    return target


def rollback(name: str = MODEL_NAME) -> Version:
    """Give `champion` back to the version that held it before the current one."""
    require_model(name)
    current = champion(name)
    if current is None:
        raise MnistError(f"model {name!r} has no champion to roll back")
    if "champion.previous" in current.tags:  # written before the alias moved
        previous = current.tags["champion.previous"]
    else:  # a version promoted before such tags were written
        moves = history(name)
        into_current = [
            str(move["previous"])
            for move in moves.to_dict("records")
            if move["action"] in PROMOTIONS and move["version"] == current.version
        ]
        previous = into_current[-1] if into_current else ""
    if not previous:
        raise MnistError(f"no earlier champion of {name!r} to roll back to (v{current.version})")
    set_champion(name, previous, "rollback", f"rolled back from v{current.version}")
    return get(name, previous)
