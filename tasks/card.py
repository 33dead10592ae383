"""The model card of a registered version (`mnist.model_card`): written right after
registration from what the flow already holds (the network, the splits, their evaluations),
and redone when the gate decides, from the facts stored beside it (`card/card.json`).

A card never fails a run: a failure is a warning, and the version's tag `card` says why.
"""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from prefect import get_run_logger, task
from prefect.cache_policies import NO_CACHE

from mnist import card_store, datastore, model_card, registry
from mnist.data import Added, Dataset
from mnist.errors import MnistError, first_line
from mnist.evaluation import Evaluation, predict_proba
from mnist.preprocess import Prepared
from mnist.settings import TrainConfig
from mnist.tracking import Run, call, client

if TYPE_CHECKING:
    import keras


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


def _origin(tags: dict[str, str]) -> str | None:
    """Where the network came from when it is not one plain training: an ensemble's members,
    a sweep's trial."""
    if members := tags.get("ensemble.members"):
        runs = members.split(",")
        seeds = tags.get("ensemble.seeds", "-").replace(",", ", ")
        named = ", ".join(f"`{r}`" for r in runs)
        return (
            f"an ensemble averaging the probabilities of {len(runs)} members (seeds {seeds}; "
            f"MLflow runs {named})"
        )
    if study := tags.get("sweep.study"):
        return f"trial {tags.get('sweep.trial', '-')} of sweep `{study}`, the best of its study"
    return None


def _recipe(config: TrainConfig, run: Run) -> dict:
    tags = call(client().get_run, run.run_id).data.tags
    warm = tags.get("warm_start")
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
        "origin": _origin(tags),
    }


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
        text = card_store.publish(name, version, run.run_id, facts, figures)
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
        card_store.rewrite(version)
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
