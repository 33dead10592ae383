"""`mnist data`: batches of labelled samples added to MNIST for training (add, list, remove);
the review of pending batches and the labelling queue are `app.cli.labels`."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING, get_args

from app.cli import labels
from app.cli.options import UsageError, add_command, add_options, settings
from mnist.errors import MnistError
from mnist.settings import DatastoreSettings, NanPolicy

if TYPE_CHECKING:
    from mnist.datastore import BatchInfo, Store
    from mnist.intake import Intake

QUEUE = "queue"
"""The source that reads a labelling queue's export (`mnist data queue --export`)."""


def data(args: argparse.Namespace) -> None:
    from mnist import datastore

    store = datastore.Store(settings(args, DatastoreSettings).datastore)
    if args.action in labels.ACTIONS:
        labels.run(args, store)
    elif args.action == "add":
        _add(args, store)
    elif args.action == "list":
        import pandas as pd

        batches = store.batches()
        rows = [
            {
                "batch": b.id,
                "source": b.source,
                "samples": b.samples,
                **{str(d): n for d, n in b.counts.items()},
                "holdout": b.holdout,
                "digest": b.digest[:12],
                "added": f"{b.created:%Y-%m-%d %H:%M}",
                "status": f"removed {b.removed:%Y-%m-%d %H:%M}" if b.removed else "active",
                "review": _review_column(b),
            }
            for b in batches
        ]
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"{store}: no batches")
        pending = [b for b in batches if b.review == datastore.PENDING and not b.removed]
        if pending:
            ids = ("batch " if len(pending) == 1 else "batches ") + ", ".join(
                str(b.id) for b in pending
            )
            print(
                f"{sum(b.samples for b in pending)} samples wait for review ({ids}): "
                "mnist data review BATCH --export DIR, then mnist data accept|reject BATCH"
            )
    elif args.action == "remove":
        batch = store.remove(args.batch)
        print(
            f"removed batch {batch.id} ({batch.source}, {batch.samples} samples) from future "
            "training; it stays in the store's history"
        )


def _add(args: argparse.Namespace, store: Store) -> None:
    from app import events
    from mnist import datastore, intake

    paths = [Path(p) for p in args.paths]
    source = datastore.check_source(args.source or source_name(paths[0]))
    queue = source == QUEUE
    found = intake.read(paths, _label(args.label), args.nan_policy or "fail", queue=queue)
    for what, why in found.rejected:
        print(f"rejected {what}: {why}")
    if not len(found.labels):
        raise MnistError("nothing to add: every sample was rejected")
    links = _links(store, found) if queue else None
    batch = store.add(found.images, found.labels, source, " ".join(args.paths), links)
    per_digit = ", ".join(f"{d}: {n}" for d, n in batch.counts.items() if n)
    print(
        f"added batch {batch.id} ({source}): {batch.samples} samples ({per_digit}); "
        f"{batch.holdout} held out for evaluation\ndigest {batch.digest}"
    )
    if links is not None:
        named = found.prediction_ids()
        told = [
            (sum(i is not None for i in links), "linked to the predictions their files name"),
            (named.count(None), "not named <prediction id>.png: added unlinked"),
            (
                sum(i is not None for i in named) - sum(i is not None for i in links),
                f"naming no prediction logged in {store}: added unlinked",
            ),
            (found.unlabelled, f"left in {intake.UNLABELLED}/: not added"),
        ]
        print("; ".join(f"{n} {what}" for i, (n, what) in enumerate(told) if n or not i))
    events.labels_arrived(store, batch.samples, source)  # news for the retrain trigger


def _links(store: Store, found: Intake) -> list[int | None]:
    """Per sample of a queue's export, the logged prediction its file names, or None (not a
    prediction id, or none in this store's log: pruned, or another store's)."""
    from mnist.datastore import PredictionLog

    named = found.prediction_ids()
    logged = PredictionLog(store).images([i for i in named if i is not None])
    return [i if i in logged else None for i in named]


def _review_column(batch: BatchInfo) -> str:
    """A batch's review as listed: pending in capitals, a review with its date."""
    from mnist.datastore import PENDING

    if batch.review == PENDING:
        return "PENDING"
    when = f" {batch.reviewed:%Y-%m-%d %H:%M}" if batch.reviewed else ""
    return batch.review + when


def source_name(path: Path) -> str:
    """A source name from a path: its stem, reduced to the characters a source name allows."""
    import re

    name = re.sub(r"[^A-Za-z0-9_.-]+", "-", path.resolve().stem if path.is_dir() else path.stem)
    return name.strip("-.")[:64] or "added"


def _label(value: str | None) -> int | None:
    if value is None:
        return None
    from mnist.digits import LABELS

    if value not in LABELS:
        raise UsageError(f"--label: expected a digit 0-9, got {value!r}")
    return int(value)


def add_parsers(commands: argparse._SubParsersAction) -> None:
    command = add_command(
        commands,
        "data",
        data,
        "labelled data added to MNIST for training: add, list, remove, review batches; "
        "the labelling queue",
    )
    actions = command.add_subparsers(dest="action", required=True, metavar="ACTION")
    add = actions.add_parser(
        "add",
        help="add a batch: PNG/JPEG files (with --label), a folder of 0/..9/ folders, "
        "a CSV label,pixel0..pixel783, or .npz with x and y",
    )
    add.add_argument("paths", nargs="+", metavar="PATH")
    add.add_argument("--label", help="the digit (0-9) of the image files given")
    add.add_argument(
        "--source",
        help="where the samples come from (default: the first PATH's name); the holdout is "
        "reported per source; 'queue' reads a labelling queue's export (mnist data queue "
        "--export): each sample is linked to the prediction its file names",
    )
    add.add_argument(
        "--nan-policy",
        choices=get_args(NanPolicy),
        help="invalid samples: fail (add nothing), drop them, or impute pixels (default fail)",
    )
    actions.add_parser("list", help="every batch: source, counts per digit, digest, status, review")
    remove = actions.add_parser("remove", help="retract BATCH from future training")
    remove.add_argument("batch", type=int, metavar="BATCH")
    labels.add_actions(actions)
    for action in actions.choices.values():
        add_options(action, DatastoreSettings)
