"""Where a version's model card lives: its run's `card/` artifacts (the markdown, the figures,
the facts as `card/card.json`), its registry description and its tag `card`. Writes the card,
reads it back and renders it again from the stored facts, without TensorFlow or Prefect."""

from __future__ import annotations

import json
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING

from mnist import model_card, registry
from mnist.errors import MnistError
from mnist.tracking import call, client

if TYPE_CHECKING:
    from matplotlib.figure import Figure

CARD_DIR = "card"
FACTS = f"{CARD_DIR}/card.json"
PENDING = "pending"
"""The tag `card` from registration until the card is written."""


def publish(
    name: str, version: str, run_id: str, facts: dict, figures: dict[str, Figure] | None = None
) -> str:
    """Render the card with the version's current tags; log it (and the figures, the facts)
    under the run's `card/`; make it the version's description. Returns the markdown."""
    mlflow = client()
    tags = registry.get(name, version).tags
    text = model_card.render(facts, tags, name, version)
    if figures is not None:
        import matplotlib.pyplot as plt

        for file, figure in figures.items():
            call(mlflow.log_figure, run_id, figure, f"{CARD_DIR}/{file}", save_kwargs={"dpi": 100})
            plt.close(figure)
        call(mlflow.log_text, run_id, json.dumps(facts, indent=1), FACTS)
    call(mlflow.log_text, run_id, text, f"{CARD_DIR}/v{version}.md")
    brief = model_card.description(text, run_id)
    call(mlflow.update_model_version, name, version, description=brief)
    registry.tag_version(name, version, {"card": f"yes: {CARD_DIR}/v{version}.md"})
    return text


def read(run_id: str, path: str, missing: str | None = None) -> str:
    """The text of artifact `path` of run `run_id`; MnistError (`missing` if it is not
    there) when it cannot be read."""
    with tempfile.TemporaryDirectory() as tmp:
        local = call(client().download_artifacts, run_id, path, tmp, missing=missing)
        try:
            return Path(local).read_text()
        except (OSError, UnicodeDecodeError) as exc:
            raise MnistError(f"cannot read {path} of run {run_id}: {exc}") from exc


def rewrite(version: registry.Version) -> str:
    """Redo the card of `version` from its stored facts (`card/card.json`) and its current
    tags: no model load, no evaluation. Returns the markdown; MnistError if the facts are
    missing or unreadable."""
    text = read(version.run_id, FACTS, f"run {version.run_id} has no {FACTS}")
    try:
        facts = json.loads(text)
    except ValueError as exc:
        raise MnistError(f"cannot read {FACTS} of run {version.run_id}: {exc}") from exc
    return publish(version.name, version.version, version.run_id, facts)
