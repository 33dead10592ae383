"""`mnist data accept|reject|review|queue`: a person's part in the loop.

Labels from anonymous clients wait in a pending batch until someone looks at them
(`review BATCH --export DIR`) and accepts or rejects the batch; the labelling queue hands out
the logged predictions most worth a label (`queue --export DIR`), and
`mnist data add DIR --source queue` takes them back, each linked to its prediction.
"""

from __future__ import annotations

import argparse
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

from app.cli.options import parse_duration
from mnist.errors import MnistError

if TYPE_CHECKING:
    from mnist.datastore import Store

ACTIONS = ("accept", "reject", "review", "queue")


def run(args: argparse.Namespace, store: Store) -> None:
    """The action `args.action` (one of ACTIONS) on `store`."""
    {"accept": _accept, "reject": _reject, "review": _review, "queue": _queue}[args.action](
        args, store
    )


def _accept(args: argparse.Namespace, store: Store) -> None:
    from app import events

    batch = store.accept(args.batch)
    print(
        f"accepted batch {batch.id} ({batch.source}, {batch.samples} samples): it trains from "
        "now on and counts toward the retrain trigger"
    )
    events.labels_arrived(store, batch.samples, batch.source)  # news for the retrain trigger


def _reject(args: argparse.Namespace, store: Store) -> None:
    batch = store.reject(args.batch)
    print(
        f"rejected batch {batch.id} ({batch.source}, {batch.samples} samples): it never trains; "
        "it stays in the store's history"
    )


def _review(args: argparse.Namespace, store: Store) -> None:
    from mnist import exports
    from mnist.datastore import PENDING

    batch = store.batch(args.batch)
    images, labels, ids = store.samples(batch.id)
    if not ids:
        raise MnistError(f"batch {batch.id} has no samples")
    dest = Path(args.export)
    files = {f"{y}/{i}.png": image for image, y, i in zip(images, labels, ids, strict=True)}
    exports.write(dest, files)
    per_digit = ", ".join(f"{d}: {n}" for d, n in batch.counts.items() if n)
    print(
        f"wrote {len(ids)} images of batch {batch.id} ({batch.source}, {batch.review}) as "
        f"{dest}/<label>/<sample id>.png: {per_digit}"
    )
    if batch.review == PENDING:
        print(f"look at them, then: mnist data accept {batch.id}, or mnist data reject {batch.id}")


def _queue(args: argparse.Namespace, store: Store) -> None:
    from mnist.datastore import PredictionLog

    log = PredictionLog(store)
    since = datetime.now(UTC) - args.since if args.since else None
    found = log.queue(args.limit, since)
    if not found:
        if not log.count():
            print(
                f"{store}: no predictions logged yet (mnist serve logs what it answers, "
                "unless --no-prediction-log)"
            )
        else:
            window = f" since {since:%Y-%m-%d %H:%M} UTC" if since else ""
            print(f"nothing to label{window}: every logged prediction with a kept image has one")
        return
    drifted = sum(q.drifted for q in found)
    from_drift = f", {drifted} from drifted windows" if drifted else ""
    if args.export is None:
        import pandas as pd

        rows = [
            {
                "id": q.id,
                "time": f"{q.at:%Y-%m-%d %H:%M:%S}",
                "version": q.version or "-",
                "digit": q.digit,
                "confidence": f"{q.confidence:.3f}",
                "drifted": "yes" if q.drifted else "no",
            }
            for q in found
        ]
        print(pd.DataFrame(rows).to_string(index=False))
        print(f"{len(found)} shown{from_drift}; to label them: mnist data queue --export DIR")
        return
    from mnist import exports
    from mnist.digits import LABELS
    from mnist.intake import UNLABELLED

    dest = Path(args.export)
    exports.write(dest, {f"{UNLABELLED}/{q.id}.png": q.image for q in found}, LABELS)
    print(
        f"wrote {len(found)} images to {dest / UNLABELLED}/ (named by prediction id, least "
        f"confident first{from_drift})\n"
        f"next: move each into {dest}/0/ .. {dest}/9/, the folder of the digit it shows (leave "
        f"those you cannot read), then: mnist data add {dest} --source queue"
    )


def _positive(text: str) -> int:
    if not text.isdigit() or int(text) < 1:
        raise argparse.ArgumentTypeError(f"expected a whole number of at least 1, got {text!r}")
    return int(text)


def add_actions(actions: argparse._SubParsersAction) -> None:
    """The parsers of ACTIONS, under `mnist data`."""
    accept = actions.add_parser(
        "accept", help="accept pending BATCH (anonymous feedback): it trains from now on"
    )
    reject = actions.add_parser("reject", help="reject pending BATCH: it never trains")
    review = actions.add_parser(
        "review", help="write BATCH's images as DIR/<label>/<sample id>.png for a look"
    )
    for action in (accept, reject, review):
        action.add_argument("batch", type=int, metavar="BATCH")
    review.add_argument(
        "--export", required=True, metavar="DIR", help="where to write (never overwrites)"
    )
    queue = actions.add_parser(
        "queue",
        help="the logged predictions most worth a label: from drifted windows, least "
        "confident, not labelled yet",
    )
    queue.add_argument(
        "--limit", type=_positive, default=100, metavar="N", help="at most N (default 100)"
    )
    queue.add_argument(
        "--since",
        type=parse_duration,
        metavar="DURATION",
        help="only predictions of the last DURATION: 30m, 24h, 7d (default: all)",
    )
    queue.add_argument(
        "--export",
        metavar="DIR",
        help="write them as DIR/unlabelled/<prediction id>.png, with empty DIR/0/..DIR/9/ to "
        "sort them into, for mnist data add DIR --source queue",
    )
