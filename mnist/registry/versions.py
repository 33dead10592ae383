"""Versions of a registered model: registering one, finding them (by number, by alias, by the
inputs they were made from), and what a model reference points at.

Aliases, never stages: `champion` names the version that is served.
"""

from __future__ import annotations

from dataclasses import dataclass, replace

import mlflow
import pandas as pd
from mlflow.entities.model_registry import ModelVersion, RegisteredModel

from mnist.references import ModelRef
from mnist.settings import CHAMPION, MODEL_NAME
from mnist.tracking import NotFound, call, client, store_uri


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


def require_model(name: str) -> RegisteredModel:
    return call(
        client().get_registered_model,
        name,
        missing=f"registered model {name!r} does not exist in {store_uri()}: "
        "the registry is empty (train a model first)",
    )


def versions(name: str = MODEL_NAME) -> list[Version]:
    """Every version of `name`, newest first; an error if the model was never registered."""
    aliases = require_model(name).aliases  # search results carry no aliases
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
    require_model(name)
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
        require_model(name)
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
