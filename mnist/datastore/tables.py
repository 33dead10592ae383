"""The added-data store's tables (SQLAlchemy's declarative mapping) and a batch as listed.

`mnist_added_batches`: one row per `mnist data add` (or per day of feedback), never deleted;
a removed batch keeps its row with the time of its removal. `mnist_added_samples`: one row
per sample, its raw pixels, its digests and the split it was given when stored.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import Boolean, DateTime, ForeignKey, Integer, LargeBinary, String, Text
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column


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
