"""The store's tables (SQLAlchemy's declarative mapping) and a batch as listed.

`mnist_added_batches`: one row per `mnist data add` (or per day and trust of feedback), never
deleted; a removed batch keeps its row with the time of its removal, a pending one waits for a
person's review. `mnist_added_samples`: one row per sample, its raw pixels, its digests, the
split it was given when stored and the prediction it labels. `mnist_predictions`: what
`mnist serve` answered. `mnist_monitor_windows`: the monitor's verdict on each window.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Integer,
    LargeBinary,
    SmallInteger,
    String,
    Text,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

TRUSTED, PENDING, ACCEPTED, REJECTED = "trusted", "pending", "accepted", "rejected"
"""A batch's review: only trusted and accepted batches train (and count as new labels)."""
TRAINS = (TRUSTED, ACCEPTED)


class Base(DeclarativeBase):
    """The mapping's registry: `Base.metadata.create_all` creates both tables."""


class Batch(Base):
    """What was added at once, from which source, and whether it was since removed."""

    __tablename__ = "mnist_added_batches"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    origin: Mapped[str] = mapped_column(Text)  # what was added: the paths, or the endpoint
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    removed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)
    # trusted (a person or a token added it), pending (an anonymous client's claim), accepted
    # or rejected (a person's review of a pending one); only trusted and accepted ones train
    review: Mapped[str] = mapped_column(String(16), default=TRUSTED, server_default=TRUSTED)
    reviewed: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Sample(Base):
    """One labelled image, its digests, and its split (decided once, `mnist.datastore.holdout`)."""

    __tablename__ = "mnist_added_samples"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    batch_id: Mapped[int] = mapped_column(ForeignKey(Batch.id), index=True)
    source: Mapped[str] = mapped_column(String(64), index=True)
    label: Mapped[int] = mapped_column(Integer)
    pixels: Mapped[bytes] = mapped_column(LargeBinary)  # 784 bytes, row-major uint8
    digest: Mapped[str] = mapped_column(String(64), index=True)  # of the label and pixels
    image: Mapped[str] = mapped_column(String(64), index=True)  # of the pixels alone
    holdout: Mapped[bool] = mapped_column(Boolean)
    # the logged prediction this label corrects (feedback) or answers (the labelling queue)
    prediction_id: Mapped[int | None] = mapped_column(BigInteger, nullable=True, index=True)
    # when it was stored (a day's feedback batch grows all day); NULL in stores made before
    created: Mapped[datetime | None] = mapped_column(DateTime(timezone=True), nullable=True)


class Prediction(Base):
    """One answer of `mnist serve`: when, by which version, the two likeliest digits, and the
    image when it was kept (a random share, `sampled`, and every low-confidence answer)."""

    __tablename__ = "mnist_predictions"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=False)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True))  # windows select by id
    version: Mapped[str] = mapped_column(String(32))
    digit: Mapped[int] = mapped_column(SmallInteger)
    confidence: Mapped[float] = mapped_column(Float)
    runner_up: Mapped[int] = mapped_column(SmallInteger)
    runner_up_p: Mapped[float] = mapped_column(Float)
    image: Mapped[bytes | None] = mapped_column(LargeBinary, nullable=True)
    sampled: Mapped[bool] = mapped_column(Boolean, default=False)


class MonitorWindow(Base):
    """The monitor's verdict on one window of logged predictions."""

    __tablename__ = "mnist_monitor_windows"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    start: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    end: Mapped[datetime] = mapped_column(DateTime(timezone=True), index=True)
    created: Mapped[datetime] = mapped_column(DateTime(timezone=True))
    verdict: Mapped[str] = mapped_column(String(32))
    drift: Mapped[bool] = mapped_column(Boolean)
    predictions: Mapped[int] = mapped_column(Integer)
    live_accuracy: Mapped[float | None] = mapped_column(Float, nullable=True)
    run_id: Mapped[str | None] = mapped_column(String(64), nullable=True)


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
    review: str = TRUSTED
    reviewed: datetime | None = None

    @property
    def samples(self) -> int:
        return sum(self.counts.values())
