"""Labelled data added by users: batches of samples in a SQL database, through SQLAlchemy.

A SQLite file beside the MLflow store by default (`MNIST_DATASTORE` or `--datastore`: any
SQLAlchemy URL, PostgreSQL included), so that several `mnist serve` processes and
`mnist data add` can write at once: a batch and its samples are one transaction.

Each sample is assigned to training or to the holdout when it is stored, and keeps that split
for good, so a holdout sample never moves into training as data grows. The rule works within
each source and digit: of the samples of one digit from one source, every `HOLDOUT_EVERY`-th
(in the order stored; within one batch, in the order of their digests) is held out, which
makes the holdout stratified by digit and source. An image already stored (the same pixels,
whatever its label) takes that one's split, so no image is both trained on and judged on.
Writers take turns: SQLite's database lock (`BEGIN IMMEDIATE`), PostgreSQL's advisory lock.

`snapshot` reads every active batch: the arrays a training run uses and one digest that names
them exactly. A removed batch stays in the database (its history), out of every snapshot.
"""

from __future__ import annotations

import functools
import hashlib
import re
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import numpy as np
from sqlalchemy import (
    Boolean,
    DateTime,
    Engine,
    ForeignKey,
    Integer,
    LargeBinary,
    String,
    Text,
    create_engine,
    event,
    func,
    select,
)
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import DeclarativeBase, Mapped, Session, mapped_column

from mnist.data import IMAGE_SIZE, Added, Split
from mnist.errors import MnistError, first_line

HOLDOUT_EVERY = 5
"""Every fifth sample of each source and digit is held out: 20% of the added data."""
FEEDBACK = "feedback"
"""The source of samples sent to `POST /feedback`; one batch per day."""
SOURCE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}$")
FILE_NAME = "mnist-data.db"


class _Base(DeclarativeBase):
    pass


class Batch(_Base):
    __tablename__ = "mnist_added_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    origin: Mapped[str] = mapped_column(Text)  # what was added: the paths, or the endpoint
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    removed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Sample(_Base):
    __tablename__ = "mnist_added_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey(Batch.id), index=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[int] = mapped_column(Integer)
    pixels: Mapped[bytes] = mapped_column(LargeBinary)  # 784 bytes, row-major uint8
    digest: Mapped[str] = mapped_column(String(64), index=True)  # of the label and pixels
    image: Mapped[str] = mapped_column(String(64), index=True)  # of the pixels alone
    holdout: Mapped[bool] = mapped_column(Boolean)


@dataclass(frozen=True)
class BatchInfo:
    """A batch as `mnist data list` shows it."""

    id: int
    source: str
    origin: str
    created: datetime
    removed: datetime | None
    counts: dict[int, int]  # samples per digit
    holdout: int
    digest: str

    @property
    def samples(self) -> int:
        return sum(self.counts.values())


def default_url() -> str:
    """A SQLite file beside the MLflow store (or in the per-user state directory)."""
    from mnist import tracking

    return f"sqlite:///{tracking.state_dir() / FILE_NAME}"


def sample_digest(pixels: np.ndarray, label: int | None = None) -> str:
    """SHA-256 of a sample: its label and pixels, or (label None) its pixels alone."""
    head = b"" if label is None else bytes([label])
    return hashlib.sha256(head + np.ascontiguousarray(pixels, np.uint8).tobytes()).hexdigest()


def check_source(name: str) -> str:
    if not SOURCE_NAME.match(name):
        raise MnistError(
            f"source name {name!r}: use 1-64 letters, digits, '.', '_' or '-', starting with a "
            "letter or digit"
        )
    return name


def safe_url(url: str) -> str:
    """The URL without its password, for messages."""
    return re.sub(r"(://[^:/@]+):[^@]*@", r"\1:***@", url)


WRITERS = 0x6D6E697374  # PostgreSQL advisory lock key: "mnist"


@functools.cache
def _engine(url: str, write: bool) -> Engine:
    """One engine per URL and use. SQLite, in WAL mode so that readers never wait: a writer
    takes the database lock when its transaction begins (`BEGIN IMMEDIATE`), waiting up to
    30 s for another; a reader's transaction is deferred."""
    if url.startswith("sqlite:///"):
        Path(url.removeprefix("sqlite:///")).parent.mkdir(parents=True, exist_ok=True)
        engine = create_engine(url, connect_args={"timeout": 30, "isolation_level": None})

        @event.listens_for(engine, "connect")
        def _connect(connection, record):
            connection.execute("PRAGMA journal_mode=WAL")
            connection.execute("PRAGMA foreign_keys=ON")

        @event.listens_for(engine, "begin")
        def _begin(connection):
            connection.exec_driver_sql("BEGIN IMMEDIATE" if write else "BEGIN")
    else:  # psycopg 3 for PostgreSQL, which SQLAlchemy takes for psycopg2 unless told
        url = re.sub(r"^postgres(ql)?://", "postgresql+psycopg://", url)
        engine = create_engine(url, pool_pre_ping=True)
    return engine


class Store:
    """The added-data store at `url` (default: `default_url()`)."""

    def __init__(self, url: str | None = None):
        self.url = url or default_url()
        try:
            self.engine = _engine(self.url, write=True)
            self.reader = _engine(self.url, write=False)
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
            _Base.metadata.create_all(self.engine)
        except SQLAlchemyError:  # another process created the tables at the same moment
            try:
                _Base.metadata.create_all(self.engine)
            except SQLAlchemyError as exc:
                raise MnistError(f"added-data store {self}: {first_line(exc)}") from exc

    def add(self, images: np.ndarray, labels: np.ndarray, source: str, origin: str) -> BatchInfo:
        """Store validated raw pixels (N, 28, 28) in 0-255 and labels 0-9 as a new batch."""
        check_source(source)
        with self._session(write=True) as session:
            batch = Batch(source=source, origin=origin, created=datetime.now(UTC))
            session.add(batch)
            session.flush()
            self._insert(session, batch, images, labels)
            batch_id = batch.id
        return self.batch(batch_id)

    def feedback(self, pixels: np.ndarray, label: int) -> tuple[int, int]:
        """Store one sample sent from serving in today's feedback batch: (sample id, batch id)."""
        today = datetime.now(UTC)
        start = today.replace(hour=0, minute=0, second=0, microsecond=0)
        with self._session(write=True) as session:
            batch = session.scalars(
                select(Batch)
                .where(Batch.source == FEEDBACK, Batch.removed.is_(None), Batch.created >= start)
                .order_by(Batch.id.desc())
                .limit(1)
                .with_for_update()
            ).first()
            if batch is None:
                batch = Batch(source=FEEDBACK, origin="POST /feedback", created=today)
                session.add(batch)
                session.flush()
            (sample,) = self._insert(session, batch, pixels[None], np.array([label]))
            return sample.id, batch.id

    def _insert(
        self, session: Session, batch: Batch, images: np.ndarray, labels: np.ndarray
    ) -> list[Sample]:
        images = np.asarray(images)
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
        samples: list[Sample | None] = [None] * len(pixels)
        for i in sorted(range(len(pixels)), key=lambda i: digests[i]):
            label = int(labels[i])
            ordinal = counts.get(label, 0)
            counts[label] = ordinal + 1
            holdout = known.get(image_digests[i], ordinal % HOLDOUT_EVERY == HOLDOUT_EVERY - 1)
            known[image_digests[i]] = holdout
            samples[i] = Sample(
                batch_id=batch.id,
                source=batch.source,
                label=label,
                pixels=pixels[i].tobytes(),
                digest=digests[i],
                image=image_digests[i],
                holdout=holdout,
            )
        session.add_all(samples)
        session.flush()
        return samples  # type: ignore[return-value]

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
        by_batch: dict[int, list] = {}
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
                )
            )
        return out

    def count(self) -> int:
        with self._session() as session:
            return session.scalar(select(func.count()).select_from(Sample)) or 0

    def snapshot(self) -> Added:
        """Every sample of every active batch, split as stored, with the snapshot's digest."""
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
                .where(Batch.removed.is_(None))
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
    if url.startswith("sqlite:///") and not Path(url.removeprefix("sqlite:///")).exists():
        return Added.nothing()
    return Store(url).snapshot()


def _digest(items) -> str:
    h = hashlib.sha256()
    for digest, holdout in items:
        h.update(f"{digest}:{'h' if holdout else 't'}\n".encode())
    return h.hexdigest()


def _utc(when: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes; they were stored in UTC."""
    return when.replace(tzinfo=UTC) if when is not None and when.tzinfo is None else when
