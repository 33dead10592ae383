"""`mnist registry card`: the whole card file before the registry's shortened description, a
true reason for a version without a card, and `--rewrite` from the stored facts; on an
in-process SQLite store with versions registered directly (no training)."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator

import pytest

from app.cli import main
from mnist import model_card
from mnist.tracking import client, experiment_id
from tests.conftest import tracking_store
from tests.unit.mnist.test_model_card import JUDGED, card_facts

_names = itertools.count(1)


@pytest.fixture(scope="module")
def card_store(tmp_path_factory) -> Iterator[str]:
    with tracking_store(tmp_path_factory.mktemp("cards")) as uri:
        yield uri


def _version(tags: dict[str, str], files: dict[str, str] | None = None) -> tuple[str, str]:
    """A model of its own with one version tagged `tags`, its run holding `files`."""
    name = f"card-model-{next(_names)}"
    client().create_registered_model(name)
    run = client().create_run(experiment_id("unit")).info
    for path, text in (files or {}).items():
        client().log_text(run.run_id, text, path)
    client().create_model_version(name, f"{run.artifact_uri}/model", run.run_id, tags=tags)
    return name, run.run_id


def _card(name: str, *args: str) -> int:
    return main(["registry", "--registered-model", name, "card", "1", *args])


@pytest.mark.parametrize(
    ("tag", "why"),
    [
        ("pending", "its card was never written: the run ended before it (pending)"),
        ("no: disk full", "writing it failed: disk full"),
        (None, "registered before model cards were written"),
    ],
)
def test_a_version_without_a_card_says_why(card_store, capsys, tag, why):
    name, _ = _version({} if tag is None else {"card": tag})
    assert _card(name) == 1
    err = capsys.readouterr().err.strip()
    assert err.endswith(f"{name} v1 has no model card: {why}") and len(err.splitlines()) == 1


def test_the_whole_card_file_is_printed_not_the_description(card_store, capsys):
    whole = "# Model card: m v1\n\n## Known limits\n\nall of them\n"
    name, _ = _version({"card": "yes: card/v1.md"}, {"card/v1.md": whole})
    client().update_model_version(name, "1", description="# Model card: m v1\n\n(shortened)")
    assert _card(name) == 0
    assert capsys.readouterr().out == whole
    client().delete_model_version_tag(name, "1", "card")
    client().set_model_version_tag(name, "1", "card", "yes: card/v9.md")  # not there
    assert _card(name) == 0
    assert capsys.readouterr().out == "# Model card: m v1\n\n(shortened)\n"


def test_rewrite_renders_the_card_again_from_its_facts(card_store, capsys):
    facts = json.dumps(card_facts())
    name, run_id = _version(JUDGED | {"card": "pending"}, {"card/card.json": facts})
    assert _card(name, "--rewrite") == 0
    out = capsys.readouterr().out
    assert out.startswith(f"# Model card: {name} v1") and "**promoted**" in out
    assert [line[3:] for line in out.splitlines() if line.startswith("## ")] == list(
        model_card.SECTIONS
    )
    mv = client().get_model_version(name, "1")
    assert mv.description == out and mv.tags["card"] == "yes: card/v1.md"
    assert _card(name) == 0 and capsys.readouterr().out == out  # now from card/v1.md
    bare, run_id = _version({"card": "pending"})
    assert _card(bare, "--rewrite") == 1
    err = capsys.readouterr().err.strip()
    assert f"run {run_id} has no card/card.json" in err and len(err.splitlines()) == 1
