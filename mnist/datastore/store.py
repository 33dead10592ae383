"""The added-data store: batches of labelled samples in a SQL database, through SQLAlchemy.

A SQLite file beside the MLflow store by default (`MNIST_DATASTORE` or `--datastore`: any
SQLAlchemy URL, PostgreSQL included), so that several `mnist serve` processes and
`mnist data add` can write at once: a batch and its samples are one transaction. Each sample
is given its split when stored (`mnist.datastore.holdout`) and keeps it for good. Writers
take turns: SQLite's database lock (`BEGIN IMMEDIATE`), PostgreSQL's advisory lock.

`snapshot` reads every active batch: the arrays a training run uses and one digest that names
them exactly. A removed batch stays in the database (its history), out of every snapshot; so
does a pending batch (anonymous feedback, a stranger's claim) until a person accepts it.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime
from typing import overload

import numpy as np
from sqlalchemy import Row, and_, func, or_, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from mnist.data import IMAGE_SIZE, Added, Split
from mnist.datastore import holdout as rule
from mnist.datastore.engines import default_url, engine, safe_url, sqlite_file
from mnist.datastore.holdout import sample_digest
from mnist.datastore.schema import upgrade
from mnist.datastore.tables import (
    ACCEPTED,
    PENDING,
    REJECTED,
    TRAINS,
    TRUSTED,
    Batch,
    BatchInfo,
    Sample,
)
from mnist.errors import MnistError, first_line

FEEDBACK = "feedback"
"""The source of trusted samples sent to `POST /feedback` (with the token); one batch a day."""
ANONYMOUS = "feedback-anonymous"
"""The source of anonymous feedback, pending until reviewed; one batch a day. A source of its
own, so that strangers' samples never shift which trusted ones the holdout takes (its
ordinals count per source)."""
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
WRITERS = 0x6D6E697374  # PostgreSQL advisory lock key: "mnist"


def check_source(name: str) -> str:
    if not SOURCE_NAME.match(name):
        raise MnistError(
            f"source name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


class Store:
    """The added-data store at `url` (default: `default_url()`)."""

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        try:
            self.engine = engine(self.url, write=True)
            self.reader = engine(self.url, write=False)
        except (SQLAlchemyError, ValueError, ImportError, OSError) as exc:
            raise MnistError(f"added-data store {safe_url(self.url)}: {first_line(exc)}") from exc
        self._create()

    def __str__(self) -> str:
        return safe_url(self.url)

    @contextmanager
    def _session(self, write: bool = False) -> Iterator[Session]:
        """One transaction: committed whole, or rolled back whole with one clear line. Writers
        take turns (the holdout's ordinals and the known images must not race)."""
        try:
            bind = self.engine if write else self.reader
            with Session(bind, expire_on_commit=False) as session, session.begin():
                if write and self.engine.dialect.name == "postgresql":
                    session.execute(select(func.pg_advisory_xact_lock(WRITERS)))
                yield session
        except SQLAlchemyError as exc:
            raise MnistError(f"added-data store {self}: {first_line(exc)}") from exc

    def _create(self) -> None:
        try:
            upgrade(self.engine)
        except SQLAlchemyError as exc:
            raise MnistError(f"added-data store {self}: {first_line(exc)}") from exc

    def add(
        self,
        images: np.ndarray,
        labels: np.ndarray,
        source: str,
        origin: str,
        prediction_ids: Sequence[int | None] | None = None,
        review: str = TRUSTED,
    ) -> BatchInfo:
        """Store validated raw pixels (N, 28, 28) in 0-255 and labels 0-9 as a new batch; each
        sample may name the logged prediction it labels."""
        check_source(source)
        with self._session(write=True) as session:
            batch = Batch(source=source, origin=origin, created=datetime.now(UTC), review=review)
            session.add(batch)
            session.flush()
            self._insert(session, batch, images, labels, prediction_ids)
            batch_id = batch.id
        return self.batch(batch_id)

    def feedback(
        self,
        pixels: np.ndarray,
        label: int,
        *,
        trusted: bool = False,
        prediction_id: int | None = None,
    ) -> tuple[int, int]:
        """Store one sample sent from serving in today's feedback batch, the trusted one or the
        pending one (an anonymous client's): (sample id, batch id)."""
        review, source = (TRUSTED, FEEDBACK) if trusted else (PENDING, ANONYMOUS)
        today = datetime.now(UTC)
        start = today.replace(hour=0, minute=0, second=0, microsecond=0)
        with self._session(write=True) as session:
            batch = session.scalars(
                select(Batch)
                .where(
                    Batch.source == source,
                    Batch.removed.is_(None),
                    Batch.review == review,
                    Batch.created >= start,
                )
                .order_by(Batch.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
            if batch is None:
                origin = "POST /feedback" + ("" if trusted else " (anonymous)")
                batch = Batch(source=source, origin=origin, created=today, review=review)
                session.add(batch)
                session.flush()
            (sample,) = self._insert(
                session, batch, pixels[None], np.array([label]), [prediction_id]
            )
            return sample.id, batch.id

    def accept(self, batch_id: int) -> BatchInfo:
        """A person accepts a pending batch: from now on it trains and counts as new labels."""
        return self._review(batch_id, ACCEPTED)

    def reject(self, batch_id: int) -> BatchInfo:
        """A person rejects a pending batch: it never trains; it stays as history."""
        return self._review(batch_id, REJECTED)

    def _review(self, batch_id: int, review: str) -> BatchInfo:
        with self._session(write=True) as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                raise MnistError(f"no batch {batch_id} in {self}")
            if batch.review != PENDING:
                when = f" on {batch.reviewed:%Y-%m-%d %H:%M}" if batch.reviewed else ""
                raise MnistError(
                    f"batch {batch_id} is {batch.review}{when}, not pending: only a pending "
                    "batch (anonymous feedback) is accepted or rejected"
                )
            if batch.removed is not None:
                raise MnistError(f"batch {batch_id} was removed on {batch.removed:%Y-%m-%d %H:%M}")
            batch.review, batch.reviewed = review, datetime.now(UTC)
        return self.batch(batch_id)

    def samples(self, batch_id: int) -> tuple[np.ndarray, np.ndarray, list[int]]:
        """A batch's images (N, 28, 28) uint8, labels and sample ids, in the order stored."""
        with self._session() as session:
            if session.get(Batch, batch_id) is None:
                raise MnistError(f"no batch {batch_id} in {self}")
            rows = session.execute(
                select(Sample.id, Sample.label, Sample.pixels)
                .where(Sample.batch_id == batch_id)
                .order_by(Sample.id)
            ).all()
        pixels = np.frombuffer(b"".join(r.pixels for r in rows), np.uint8)
        images = pixels.reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
        return images, np.array([r.label for r in rows], np.uint8), [r.id for r in rows]

    def new_labels(self, since: datetime | None) -> int:
        """Trusted labels that arrived after `since` (all, for None): trusted samples stored
        since, and the samples of pending batches accepted since; removed ones left out."""
        query = (
            select(func.count(Sample.id))
            .join(Batch, Batch.id == Sample.batch_id)
            .where(Batch.removed.is_(None), Batch.review.in_(TRAINS))
        )
        if since is not None:
            since = since.astimezone(UTC)
            query = query.where(
                or_(
                    and_(
                        Batch.review == TRUSTED,
                        func.coalesce(Sample.created, Batch.created) > since,
                    ),
                    and_(Batch.review == ACCEPTED, Batch.reviewed > since),
                )
            )
        with self._session() as session:
            return session.scalar(query) or 0

    def _insert(
        self,
        session: Session,
        batch: Batch,
        images: np.ndarray,
        labels: np.ndarray,
        prediction_ids: Sequence[int | None] | None = None,
    ) -> list[Sample]:
        images = np.asarray(images)
        predictions = list(prediction_ids) if prediction_ids is not None else [None] * len(labels)
        if len(predictions) != len(labels):
            raise MnistError(f"{len(labels)} samples but {len(predictions)} prediction ids")
        labels = np.asarray(labels).astype(np.int64)
        if images.shape[1:] != (IMAGE_SIZE, IMAGE_SIZE) or len(images) != len(labels):
            raise MnistError(
                f"expected (N, 28, 28) images and N labels, got {images.shape} and {labels.shape}"
            )
        pixels = np.rint(images).clip(0, 255).astype(np.uint8)
        digests = [sample_digest(p, int(y)) for p, y in zip(pixels, labels, strict=True)]
        image_digests = [sample_digest(p) for p in pixels]
        known: dict[str, bool] = {}
        unique = sorted(set(image_digests))
        for start in range(0, len(unique), 5000):  # SQLite takes at most 32,766 parameters
            chunk = unique[start : start + 5000]
            known |= dict(
                session.execute(
                    select(Sample.image, Sample.holdout).where(Sample.image.in_(chunk))
                ).all()
            )
        counts = dict(
            session.execute(
                select(Sample.label, func.count())
                .where(Sample.source == batch.source)
                .group_by(Sample.label)
            ).all()
        )
        digits = [int(y) for y in labels]
        now = datetime.now(UTC)
        held = rule.assign(digits, digests, image_digests, counts, known)
        samples = [
            Sample(
                batch_id=batch.id,
                source=batch.source,
                label=label,
                pixels=pixels[i].tobytes(),
                digest=digests[i],
                image=image_digests[i],
                holdout=held[i],
                prediction_id=predictions[i],
                created=now,
            )
            for i, label in enumerate(digits)
        ]
        session.add_all(samples)
        session.flush()
        return samples

    def remove(self, batch_id: int) -> BatchInfo:
        """Retract a batch from future snapshots; it stays in the database."""
        with self._session(write=True) as session:
            batch = session.get(Batch, batch_id)
            if batch is None:
                raise MnistError(f"no batch {batch_id} in {self}")
            if batch.removed is not None:
                raise MnistError(
                    f"batch {batch_id} was already removed on {batch.removed:%Y-%m-%d %H:%M}"
                )
            batch.removed = datetime.now(UTC)
        return self.batch(batch_id)

    def batch(self, batch_id: int) -> BatchInfo:
        found = [b for b in self.batches() if b.id == batch_id]
        if not found:
            raise MnistError(f"no batch {batch_id} in {self}")
        return found[0]

    def batches(self) -> list[BatchInfo]:
        """Every batch, removed ones included, oldest first."""
        with self._session() as session:
            batches = session.scalars(select(Batch).order_by(Batch.id)).all()
            rows = session.execute(
                select(Sample.batch_id, Sample.label, Sample.digest, Sample.holdout).order_by(
                    Sample.digest
                )
            ).all()
        by_batch: dict[int, list[Row]] = {}
        for row in rows:
            by_batch.setdefault(row.batch_id, []).append(row)
        out = []
        for b in batches:
            mine = by_batch.get(b.id, [])
            counts = dict.fromkeys(range(10), 0)
            for row in mine:
                counts[row.label] += 1
            digest = _digest((r.digest, r.holdout) for r in mine)
            out.append(
                BatchInfo(
                    b.id,
                    b.source,
                    b.origin,
                    _utc(b.created),
                    _utc(b.removed),
                    counts,
                    sum(r.holdout for r in mine),
                    digest,
                    b.review,
                    _utc(b.reviewed),
                )
            )
        return out

    def count(self) -> int:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(Sample)) or 0

    def snapshot(self) -> Added:
        """Every sample of every active trusted or accepted batch, split as stored, with the
        snapshot's digest."""
        with self._session() as session:
            rows = session.execute(
                select(
                    Sample.batch_id,
                    Sample.source,
                    Sample.label,
                    Sample.pixels,
                    Sample.digest,
                    Sample.holdout,
                )
                .join(Batch, Batch.id == Sample.batch_id)
                .where(Batch.removed.is_(None), Batch.review.in_(TRAINS))
                .order_by(Sample.id)
            ).all()
        pixels = np.frombuffer(b"".join(r.pixels for r in rows), np.uint8).reshape(
            -1, IMAGE_SIZE, IMAGE_SIZE
        )
        labels = np.array([r.label for r in rows], np.uint8)
        holdout = np.array([r.holdout for r in rows], bool)
        sources = np.array([r.source for r in rows], dtype=object)
        digest = _digest(sorted((r.digest, r.holdout) for r in rows)) if rows else ""
        where = str(self)
        return Added(
            train=Split(pixels[~holdout], labels[~holdout], where),
            holdout=Split(pixels[holdout], labels[holdout], where),
            holdout_sources=sources[holdout],
            digest=digest,
            batches=tuple(sorted({r.batch_id for r in rows})),
        )


def snapshot(url: str | None = None) -> Added:
    """The snapshot of the store at `url`; nothing, without creating it, where no SQLite
    store exists yet (a training run only reads)."""
    url = url or default_url()
    if (path := sqlite_file(url)) is not None and not path.exists():
        return Added.nothing()
    return Store(url).snapshot()


def _digest(items: Iterable[tuple[str, bool]]) -> str:
    h = hashlib.sha256()
    for digest, holdout in items:
        h.update(f"{digest}:{'h' if holdout else 't'}\n".encode())
    return h.hexdigest()


@overload
def _utc(when: datetime) -> datetime: ...
@overload
def _utc(when: None) -> None: ...
def _utc(when: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
