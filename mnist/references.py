"""One type for a model reference: what the `--model` and `--start-from` options, the registry
and the HTTP service are given, told apart in one place.

`ModelRef.parse` classifies a reference without importing MLflow (start-up time): a registry
alias (`models:/NAME@ALIAS`), a registered version (`models:/NAME/VERSION`), a logged model
(`models:/m-ID`), a run's artifact (`runs:/ID/PATH`), another URI, or a local path.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal

Kind = Literal["alias", "version", "logged", "models", "run", "uri", "path"]
"""`models` is any other `models:/` form (a stage, `latest`); `uri` any other scheme."""

_ALIAS = re.compile(r"^models:/(?P<name>[^/@]+)@(?P<alias>[^/]+)$")
_VERSION = re.compile(r"^models:/(?P<name>[^/@]+)/(?P<version>\d+)$")
_LOGGED = re.compile(r"^models:/(?P<model_id>[^/@]+)$")
_RUN = re.compile(r"^runs:/(?P<run_id>[^/]+)(?:/(?P<path>.*))?$")


@dataclass(frozen=True)
class ModelRef:
    """A model reference, classified; `str()` and `.uri` give it back as it was written."""

    uri: str
    kind: Kind
    name: str | None = None  # of the registered model (alias, version)
    alias: str | None = None
    version: str | None = None
    model_id: str | None = None  # of a logged model (`models:/m-ID`)
    run_id: str | None = None  # of a `runs:/` reference
    artifact_path: str | None = None  # within that run

    @classmethod
    def parse(cls, text: str) -> ModelRef:
        """Classify `text`; any string is a reference of some kind (a path, at worst)."""
        if match := _ALIAS.match(text):
            return cls(text, "alias", name=match["name"], alias=match["alias"])
        if match := _VERSION.match(text):
            return cls(text, "version", name=match["name"], version=match["version"])
        if match := _LOGGED.match(text):
            return cls(text, "logged", model_id=match["model_id"])
        if text.startswith("models:/"):
            return cls(text, "models")
        if match := _RUN.match(text):
            return cls(text, "run", run_id=match["run_id"], artifact_path=match["path"] or "")
        if "://" in text or ":/" in text:
            return cls(text, "uri")
        return cls(text, "path")

    @classmethod
    def by_version(cls, name: str, version: str | int) -> ModelRef:
        """`models:/NAME/VERSION`."""
        return cls(f"models:/{name}/{version}", "version", name=name, version=str(version))

    @classmethod
    def by_alias(cls, name: str, alias: str) -> ModelRef:
        """`models:/NAME@ALIAS`."""
        return cls(f"models:/{name}@{alias}", "alias", name=name, alias=alias)

    @property
    def registered(self) -> bool:
        """Whether it names a registered model's version, directly or by alias."""
        return self.kind in ("alias", "version")

    @property
    def tracked(self) -> bool:
        """Whether loading it asks MLflow's tracking store (or server) where it is; a local
        path or another URI (`file:`, `s3:`) is read without it."""
        return self.kind != "path" and (
            self.kind != "uri" or self.uri.startswith("mlflow-artifacts:")
        )

    @property
    def local(self) -> bool:
        """Whether it is a path on this machine rather than a URI."""
        return self.kind == "path"

    def __str__(self) -> str:
        return self.uri
