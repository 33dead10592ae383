"""The model card of a registered version (`mnist.model_card`): written right after
registration from what the flow already holds (the network, the splits, their evaluations),
and redone when the gate decides, from the facts stored beside it (`card/card.json`).

A card never fails a run: a failure is a warning, and the version's tag `card` says why.
"""

from __future__ import annotations

import json
import tempfile
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import datastore, model_card, registry
from mnist.data import Added, Dataset
from mnist.errors import MnistError, first_line
from mnist.evaluation import Evaluation, predict_proba
from mnist.preprocess import Prepared
from mnist.settings import TrainConfig
from mnist.tracking import Run, call, client

if TYPE_CHECKING:
    import keras
    from matplotlib.figure import Figure

CARD_DIR = "card"
FACTS = f"{CARD_DIR}/card.json"


def _batches(config: TrainConfig, added: Added) -> list[dict[str, Any]]:
    """The added-data batches the run learnt from, with their sources, from the store."""
    if not added.batches:
        return []
    try:
        known = {b.id: b for b in datastore.Store(config.datastore).batches()}
    except MnistError:  # the store went away since the snapshot: the ids are still known
        known = {}
    rows = []
    for batch in added.batches:
        info = known.get(batch)
        rows.append(
            {
                "id": batch,
                "source": info.source if info else "unknown source",
                "samples": info.samples if info else 0,
                "review": info.review if info else "?",
            }
        )
    return rows


def _data(config: TrainConfig, prepared: Prepared, dataset: Dataset, added: Added) -> dict:
    return {
        "mnist_source": dataset.train.source,
        "mnist_digest": dataset.digest,
        "mnist_read": len(dataset.train.images[: config.train_limit]),
        "validation": len(prepared.val),
        "test_read": len(prepared.test),
        "trained_on": len(prepared.train),
        "added": {
            "digest": added.digest,
            "train": len(added.train),
            "holdout": len(added.holdout),
            "repeats": prepared.added_repeats,
            "batches": _batches(config, added),
        },
    }


def _recipe(config: TrainConfig, run: Run) -> dict:
    warm = call(client().get_run, run.run_id).data.tags.get("warm_start")
    knobs = {"seed", "validation_split", "train_limit", "test_limit", "added_share", "profile"}
    if warm and not warm.startswith("none"):
        start = f"from {warm}"
    else:
        why = f"{warm.removeprefix('none: ')}; " if warm else ""
        start = f"none ({why}trained from scratch)"
    return {
        **config.recipe.model_dump(),
        **config.model_dump(include=knobs, mode="json"),
        "warm_start": start,
    }


def publish(
    name: str, version: str, run_id: str, facts: dict, figures: dict[str, Figure] | None = None
) -> str:
    """Render the card with the version's current tags; log it (and the figures, the facts)
    under the run's `card/`; make it the version's description. Returns the markdown."""
    import matplotlib.pyplot as plt

    mlflow = client()
    tags = registry.get(name, version).tags
    text = model_card.render(facts, tags, name, version)
    for file, figure in (figures or {}).items():
        call(mlflow.log_figure, run_id, figure, f"{CARD_DIR}/{file}", save_kwargs={"dpi": 100})
        plt.close(figure)
    if figures is not None:
        call(mlflow.log_text, run_id, json.dumps(facts, indent=1), FACTS)
    call(mlflow.log_text, run_id, text, f"{CARD_DIR}/v{version}.md")
    brief = model_card.description(text, run_id)
    call(mlflow.update_model_version, name, version, description=brief)
    registry.tag_version(name, version, {"card": f"yes: {CARD_DIR}/v{version}.md"})
    return text


def _failed(name: str, version: str, why: str) -> None:
    get_run_logger().warning("model card of %s v%s: %s", name, version, why)
    try:
        registry.tag_version(name, version, {"card": f"no: {why}"})
    except MnistError as exc:
        get_run_logger().warning("cannot tag %s v%s either: %s", name, version, first_line(exc))


@task(name="model-card", task_run_name="card-v{version}", cache_policy=NO_CACHE)
def card(
    net: keras.Model,
    config: TrainConfig,
    prepared: Prepared,
    test: Evaluation,
    holdout: Evaluation | None,
    dataset: Dataset,
    added: Added,
    run: Run,
    version: str,
) -> str | None:
    """Write the card of version `version` of `config.registered_model`: the description,
    `card/v{N}.md`, the figures and `card/card.json`. Returns the markdown, or None when it
    could not be made."""
    start, name = time.perf_counter(), config.registered_model
    try:
        facts, figures = model_card.assemble(
            lambda x: predict_proba(net, x),
            prepared.test.x,
            test,
            holdout,
            _recipe(config, run),
            _data(config, prepared, dataset, added),
        )
        text = publish(name, version, run.run_id, facts, figures)
    except Exception as exc:  # a card is worth a warning, never a failed training
        _failed(name, version, first_line(exc))
        return None
    seconds = time.perf_counter() - start
    run.log_metrics({"card_seconds": seconds})
    get_run_logger().info("model card of %s v%s written in %.1f s", name, version, seconds)
    return text


def decided(version: registry.Version) -> None:
    """Redo the card of a version the gate just judged, with its decision: from the stored
    facts and the version's tags, no evaluation. Called inside the gate's task; never raises."""
    start = time.perf_counter()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            path = call(client().download_artifacts, version.run_id, FACTS, tmp)
            facts = json.loads(Path(path).read_text())
        publish(version.name, version.version, version.run_id, facts)
    except Exception as exc:  # the decision is recorded in the tags already
        why = f"without the gate's decision: {first_line(exc)}"
        get_run_logger().warning("model card of %s v%s %s", version.name, version.version, why)
        return
    get_run_logger().info(
        "model card of %s v%s: the gate's decision added in %.1f s",
        version.name,
        version.version,
        time.perf_counter() - start,
    )
