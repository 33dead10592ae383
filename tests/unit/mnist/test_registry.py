"""`mnist.registry`: references resolved to versions, `champion` moved with its history kept,
on an in-process SQLite store with versions registered directly (no training)."""

from __future__ import annotations

import itertools
import time
from collections.abc import Iterator

import mlflow
import pytest

from app.cli import main
from mnist import registry
from mnist.errors import MnistError
from mnist.tracking import client, experiment_id
from tests.conftest import tracking_store

_names = itertools.count(1)


@pytest.fixture(scope="module")
def registry_store(tmp_path_factory) -> Iterator[str]:
    with tracking_store(tmp_path_factory.mktemp("registry")) as uri:
        yield uri


@pytest.fixture
def model(registry_store) -> str:
    """A model of its own for each test (tests run in random order and move aliases) with three
    versions; v2's run learnt from added batches 1 and 3, v3 was made from the inputs `abc`
    and judged."""
    name = f"unit-model-{next(_names)}"
    client().create_registered_model(name)
    for tags, version_tags in [
        ({}, {}),
        ({"added_batches": "1,3"}, {}),
        ({}, {"inputs_digest": "abc", "decision": "rejected"}),
    ]:
        run = client().create_run(experiment_id("unit"), tags=tags).info
        client().create_model_version(
            name, f"{run.artifact_uri}/model", run.run_id, tags=version_tags
        )
    return name


def test_versions_newest_first_with_their_aliases(model):
    client().set_registered_model_alias(model, "canary", "2")
    try:
        found = registry.versions(model)
        assert [v.version for v in found] == ["3", "2", "1"]
        assert [v.aliases for v in found] == [[], ["canary"], []]
        assert registry.get(model, alias="canary").uri == f"models:/{model}/2"
    finally:
        client().delete_registered_model_alias(model, "canary")


def test_resolve_gives_the_version_an_alias_points_at_now(model):
    client().set_registered_model_alias(model, "canary", "3")
    try:
        assert registry.resolve(f"models:/{model}@canary") == f"models:/{model}/3"
    finally:
        client().delete_registered_model_alias(model, "canary")
    for other in (f"models:/{model}/2", "models:/m-123", "runs:/abc/model", "model.keras"):
        assert registry.resolve(other) == other
    with pytest.raises(MnistError, match=f"model '{model}' has no alias 'gold'"):
        registry.resolve(f"models:/{model}@gold")


def test_trained_on_reads_the_batches_of_a_version_reference_only(model):
    assert registry.trained_on(f"models:/{model}/2") == {1, 3}
    assert registry.trained_on(f"models:/{model}/1") is None  # no such tag: not known
    assert registry.trained_on(f"models:/{model}@champion") is None
    assert registry.trained_on("runs:/abc/model") is None


def test_with_inputs_finds_the_judged_version_made_from_them(model):
    assert registry.with_inputs(model, "abc").version == "3"
    assert registry.with_inputs(model, "other") is None
    assert registry.with_inputs("no-such-model", "abc") is None


def test_promote_and_rollback_move_champion_and_keep_the_history(model):
    assert registry.champion(model) is None
    registry.promote("1", model, reason="first")
    registry.promote("2", model, reason="drill")
    with pytest.raises(MnistError, match="already the champion"):
        registry.promote("2", model)
    assert registry.rollback(model).version == "1"
    assert registry.champion(model).version == "1"
    events = registry.history(model)
    assert events["action"].tolist() == ["promote", "promote", "rollback"]
    assert events["previous"].tolist() == ["", "1", "2"]
    assert events["reason"].tolist() == ["first", "drill", "rolled back from v2"]
    with pytest.raises(MnistError, match="no earlier champion"):
        registry.rollback(model)  # v1 was the first champion


def test_a_move_cut_short_by_a_crash_is_written_to_the_history(model):
    """Tags written and the alias moved, then a crash before the event: repaired once."""
    before = len(registry.history(model))
    registry.tag_version(
        model,
        "3",
        {
            "champion.action": "promote",
            "champion.from": "1",
            "champion.reason": "crashed",
            "champion.time_ns": str(time.time_ns()),  # after every event so far
        },
    )
    client().set_registered_model_alias(model, "champion", "3")
    assert registry.repair_history(model) is True
    assert registry.repair_history(model) is False
    events = registry.history(model)
    assert len(events) == before + 1
    last = events.iloc[-1]
    assert (last["action"], last["version"], last["previous"]) == ("promote", "3", "1")
    assert last["reason"] == "crashed (recorded after a crash)"


def test_unreachable_tracking_server(monkeypatch, capsys):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", "http://127.0.0.1:9")
    monkeypatch.setenv("MLFLOW_HTTP_REQUEST_MAX_RETRIES", "0")
    monkeypatch.setenv("MNIST_OUTAGE_SECONDS", "0")  # no wait for a restart
    mlflow.set_tracking_uri("http://127.0.0.1:9")
    try:
        assert main(["registry", "list"]) == 1
    finally:
        mlflow.set_tracking_uri(None)
    err = capsys.readouterr().err.strip()
    assert err == (  # checked before the first contact (mnist.addresses)
        "mnist: error: MLFLOW_TRACKING_URI=http://127.0.0.1:9: 127.0.0.1:9 refuses connections; "
        "start the server there, or correct MLFLOW_TRACKING_URI"
    )
