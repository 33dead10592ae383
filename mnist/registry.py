"""The MLflow model registry: versions of a registered model, the `champion` alias, its history.

Aliases, never stages. MLflow keeps no record of where an alias pointed before (mlflow#2169),
so every move of `champion` (promotion, manual promote, rollback) is also written as an event
run in the experiment `<model>-champion-history`: an append-only audit log, readable from any
client of the same tracking store, that `rollback` and `history` read back. Model references
are told apart by `mnist.references.ModelRef`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion, RegisteredModel

from mnist.errors import MnistError
from mnist.references import ModelRef
from mnist.settings import CHAMPION, MODEL_NAME
from mnist.tracking import NotFound, call, client, experiment_id, store_uri


@dataclass(frozen=True)
class Version:
    """One registered model version, as the CLI and the gate see it."""

    name: str
    version: str
    run_id: str
    aliases: list[str]
    tags: dict[str, str]
    created: pd.Timestamp
    source: str

    @property
    def ref(self) -> ModelRef:
        """`models:/NAME/VERSION`."""
        return ModelRef.by_version(self.name, self.version)

    @property
    def uri(self) -> str:
        return self.ref.uri

    @property
    def test_accuracy(self) -> float | None:
        """From the version's tag, else from its run's `test_accuracy` metric."""
        if value := self.tags.get("test_accuracy"):
            return float(value)
        try:
            run = call(client().get_run, self.run_id, missing="no such run")
        except NotFound:  # no run id, or the run was deleted
            return None
        return run.data.metrics.get("test_accuracy")

    @classmethod
    def of(cls, mv: ModelVersion) -> Version:
        return cls(
            name=mv.name,
            version=str(mv.version),
            run_id=mv.run_id or "",
            aliases=list(mv.aliases or []),
            tags=dict(mv.tags or {}),
            created=pd.to_datetime(mv.creation_timestamp, unit="ms", utc=True),
            source=mv.source or "",
        )


def register(model_uri: str, run_id: str, tags: dict[str, str], name: str = MODEL_NAME) -> Version:
    """Register a logged model as a new version of `name`, tagged with its lineage."""
    mv = call(
        mlflow.register_model,
        model_uri,
        name,
        tags={"run_id": run_id, **tags},
        await_registration_for=60,
    )
    return get(name, str(mv.version))


def _require_model(name: str) -> RegisteredModel:
    return call(
        client().get_registered_model,
        name,
        missing=f"registered model {name!r} does not exist in {store_uri()}: "
        "the registry is empty (train a model first)",
    )


def versions(name: str = MODEL_NAME) -> list[Version]:
    """Every version of `name`, newest first; an error if the model was never registered."""
    aliases = _require_model(name).aliases  # search results carry no aliases
    found = call(client().search_model_versions, f"name = '{name}'", max_results=10000)
    out = [
        replace(
            Version.of(mv),
            aliases=sorted(a for a, v in aliases.items() if str(v) == str(mv.version)),
        )
        for mv in found
    ]
    return sorted(out, key=lambda v: -int(v.version))


def get(name: str = MODEL_NAME, version: str | None = None, alias: str | None = None) -> Version:
    """A version by number or by alias."""
    _require_model(name)
    if alias is not None:
        mv = call(
            client().get_model_version_by_alias,
            name,
            alias,
            missing=f"model {name!r} has no alias {alias!r}",
        )
    else:
        mv = call(
            client().get_model_version,
            name,
            str(version),
            missing=f"model {name!r} has no version {version}",
        )
    return Version.of(mv)


def champion(name: str = MODEL_NAME) -> Version | None:
    """The version `champion` points at, or None when there is none (or no model yet)."""
    try:
        return Version.of(call(client().get_model_version_by_alias, name, CHAMPION, missing="-"))
    except NotFound:
        return None


def with_inputs(name: str, digest: str) -> Version | None:
    """The newest version of `name` made from exactly these inputs (data, added-data snapshot,
    recipe, code: the tag `inputs_digest`) and judged by the gate, or None. A version whose
    gate never ended (a crash, a timeout) does not count: it was never judged."""
    try:
        _require_model(name)
    except NotFound:
        return None
    found = call(
        client().search_model_versions, f"name = '{name}' and tags.inputs_digest = '{digest}'"
    )
    judged = [v for v in map(Version.of, found) if "decision" in v.tags]
    return max(judged, key=lambda v: int(v.version), default=None)


def lookup(ref: ModelRef) -> Version | None:
    """The version a registry reference (`models:/NAME@ALIAS`, `models:/NAME/VERSION`) points
    at now; None for any other kind of reference."""
    if ref.name is None or not ref.registered:
        return None
    return get(ref.name, ref.version, ref.alias)


def resolve(ref: str) -> str:
    """`models:/NAME@ALIAS` as the version it points at now (`models:/NAME/VERSION`), so that
    what is loaded and what is recorded are the same; any other reference as it is."""
    parsed = ModelRef.parse(ref)
    version = lookup(parsed) if parsed.kind == "alias" else None
    return version.uri if version else ref


def source_run(ref: str) -> str:
    """The id of the MLflow run that made the model `ref` (`models:/NAME/VERSION`,
    `models:/NAME@ALIAS`, `runs:/ID/...`); any other kind of reference is an error, since
    it cannot be traced to its run, its data and its code."""
    parsed = ModelRef.parse(ref)
    if parsed.kind == "run" and parsed.run_id:
        return parsed.run_id
    version = lookup(parsed)
    if version is None or not version.run_id:
        raise MnistError(
            f"{ref}: not traceable to the run that made it; name a registered version "
            "(models:/NAME/VERSION, models:/NAME@ALIAS) or runs:/RUN_ID/model"
        )
    return version.run_id


def trained_on(ref: str) -> set[int] | None:
    """The added-data batches the model `models:/NAME/VERSION` learnt from (its run's tag
    `added_batches`), or None when that is not known (another kind of reference, an older run)."""
    parsed = ModelRef.parse(ref)
    version = lookup(parsed) if parsed.kind == "version" else None
    if version is None:
        return None
    run = call(client().get_run, version.run_id, missing=f"the run of {ref} is gone")
    tag = run.data.tags.get("added_batches")
    if tag is None:
        return None
    return {int(b) for b in tag.split(",") if b.strip().isdigit()}


def tag_version(name: str, version: str, tags: dict[str, str]) -> None:
    for key, value in tags.items():
        call(client().set_model_version_tag, name, version, key, value)


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
    columns = pd.Index(["time", "action", "version", "previous", "reason"])
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
    _require_model(name)
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
