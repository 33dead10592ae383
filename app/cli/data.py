"""`mnist data`: batches of labelled samples added to MNIST for training."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import get_args

from app.cli.options import UsageError, add_command, add_options, settings
from mnist.errors import MnistError
from mnist.settings import DatastoreSettings, NanPolicy


def data(args: argparse.Namespace) -> None:
    from mnist import datastore

    store = datastore.Store(settings(args, DatastoreSettings).datastore)
    if args.action == "add":
        from mnist import intake

        paths = [Path(p) for p in args.paths]
        source = datastore.check_source(args.source or source_name(paths[0]))
        label = _label(args.label)
        found = intake.read(paths, label, args.nan_policy or "fail")
        for what, why in found.rejected:
            print(f"rejected {what}: {why}")
        if not len(found.labels):
            raise MnistError("nothing to add: every sample was rejected")
        batch = store.add(found.images, found.labels, source, " ".join(args.paths))
        per_digit = ", ".join(f"{d}: {n}" for d, n in batch.counts.items() if n)
        print(
            f"added batch {batch.id} ({source}): {batch.samples} samples ({per_digit}); "
            f"{batch.holdout} held out for evaluation\ndigest {batch.digest}"
        )
    elif args.action == "list":
        import pandas as pd

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
            }
            for b in store.batches()
        ]
        print(pd.DataFrame(rows).to_string(index=False) if rows else f"{store}: no batches")
    elif args.action == "remove":
        batch = store.remove(args.batch)
        print(
            f"removed batch {batch.id} ({batch.source}, {batch.samples} samples) from future "
            "training; it stays in the store's history"
        )


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
        "labelled data added to MNIST for training: add, list, remove batches",
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
        help="where the samples come from (default: the first "
        "PATH's name); the holdout is reported per source",
    )
    add.add_argument(
        "--nan-policy",
        choices=get_args(NanPolicy),
        help="invalid samples: fail (add nothing), drop them, or impute pixels (default fail)",
    )
    actions.add_parser("list", help="every batch: source, counts per digit, digest, status")
    remove = actions.add_parser("remove", help="retract BATCH from future training")
    remove.add_argument("batch", type=int, metavar="BATCH")
    for action in actions.choices.values():
        add_options(action, DatastoreSettings)
