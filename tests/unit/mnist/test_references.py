"""`mnist.references`: every kind of model reference is told apart, and written back as given."""

from __future__ import annotations

import pytest
from hypothesis import given
from hypothesis import strategies as st

from mnist.references import ModelRef

names = st.from_regex(r"[A-Za-z0-9][A-Za-z0-9_.\-]{0,20}", fullmatch=True)
aliases = st.from_regex(r"[A-Za-z_][A-Za-z0-9_\-]{0,12}", fullmatch=True)
versions = st.integers(min_value=1, max_value=10**6)


@pytest.mark.parametrize(
    ("text", "kind", "fields"),
    [
        ("models:/mnist-cnn@champion", "alias", {"name": "mnist-cnn", "alias": "champion"}),
        ("models:/mnist-cnn/12", "version", {"name": "mnist-cnn", "version": "12"}),
        ("models:/m-0123abcd", "logged", {"model_id": "m-0123abcd", "name": None}),
        ("models:/mnist-cnn/Production", "models", {"name": None, "version": None}),
        ("models:/mnist-cnn/latest", "models", {}),
        ("runs:/abc123/model", "run", {"run_id": "abc123", "artifact_path": "model"}),
        ("runs:/abc123", "run", {"run_id": "abc123", "artifact_path": ""}),
        ("s3://bucket/model", "uri", {}),
        ("file:///tmp/model", "uri", {}),
        ("model.keras", "path", {}),
        ("~/models/dir", "path", {}),
        ("/abs/path/model.keras", "path", {}),
    ],
)
def test_parse_tells_each_kind_apart(text: str, kind: str, fields: dict[str, str | None]) -> None:
    ref = ModelRef.parse(text)
    assert ref.kind == kind
    assert {k: getattr(ref, k) for k in fields} == fields
    assert str(ref) == ref.uri == text
    assert ref.registered == (kind in ("alias", "version"))
    assert ref.local == (kind == "path")


@given(names, aliases)
def test_an_alias_reference_round_trips(name: str, alias: str) -> None:
    ref = ModelRef.by_alias(name, alias)
    assert ModelRef.parse(str(ref)) == ref
    assert (ref.name, ref.alias, ref.version) == (name, alias, None)


@given(names, versions)
def test_a_version_reference_round_trips(name: str, version: int) -> None:
    ref = ModelRef.by_version(name, version)
    assert str(ref) == f"models:/{name}/{version}"
    assert ModelRef.parse(str(ref)) == ref
    assert ref.version == str(version) and ref.alias is None


@given(st.text(max_size=40))
def test_any_text_is_some_reference_and_written_back_unchanged(text: str) -> None:
    ref = ModelRef.parse(text)
    assert str(ref) == text
    if ref.kind == "alias":
        assert ref.name and ref.alias and f"models:/{ref.name}@{ref.alias}" == text
    if ref.kind == "version":
        assert ref.name and ref.version and ref.version.isdigit()
    if ref.kind == "path":
        assert ":/" not in text


def test_only_references_mlflow_resolves_are_tracked() -> None:
    tracked = ["models:/m@champion", "models:/m/3", "models:/m-abc", "runs:/r/model"]
    tracked += ["mlflow-artifacts:/1/x/model"]
    untracked = ["./model", "/srv/model.keras", "file:///srv/model", "s3://bucket/model"]
    assert [ModelRef.parse(t).tracked for t in tracked] == [True] * len(tracked)
    assert [ModelRef.parse(t).tracked for t in untracked] == [False] * len(untracked)
