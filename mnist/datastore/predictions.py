"""The prediction log: what `mnist serve` answered, in the store's table `mnist_predictions`.

A prediction's id is made by the server when it answers (`new_ids`), before the row is
written, and orders predictions in time: its high bits are the milliseconds since 2020, so a
window of time is a range of the primary key and its queries use that index whatever the
log's size. Written in batches by `mnist.prediction_log`; read by the monitor (`window`), the
labelling queue (`queue`) and `mnist data review` (`images`).
"""

from __future__ import annotations

import secrets
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

import numpy as np
from sqlalchemy import case, delete, exists, func, insert, select
from sqlalchemy.exc import SQLAlchemyError

from mnist.data import IMAGE_SIZE
from mnist.datastore.store import Store, _utc
from mnist.datastore.tables import REJECTED, TRAINS, Batch, MonitorWindow, Prediction, Sample
from mnist.errors import MnistError, first_line

EPOCH_MS = int(datetime(2020, 1, 1, tzinfo=UTC).timestamp() * 1000)
MAX_ID = 2**63 - 1
"""The largest prediction id (a positive 64-bit integer, SQL's BIGINT)."""
RANDOM_BITS = 22
"""Below the milliseconds: random bits, so that servers in several processes never meet."""


_MASK = (1 << RANDOM_BITS) - 1
_next = {"ms": -1, "low": 0}
"""The millisecond of this process's last id and the low bits its next id in it takes."""
_next_lock = threading.Lock()


def new_ids(n: int, at: datetime | None = None) -> list[int]:
    """`n` new prediction ids for answers given at `at` (now): time-ordered. Within a
    millisecond a process counts up from a random start, so its own ids never clash; two
    processes clash only when their counts meet in the same millisecond (one row lost, never
    a write)."""
    ms = _ms(at or datetime.now(UTC))
    with _next_lock:
        low = _next["low"] if _next["ms"] == ms else secrets.randbits(RANDOM_BITS)
        _next["ms"], _next["low"] = ms, (low + n) & _MASK
    return [(ms << RANDOM_BITS) | ((low + i) & _MASK) for i in range(n)]


def id_time(prediction_id: int) -> datetime:
    """When the prediction `prediction_id` was made."""
    return datetime.fromtimestamp(((prediction_id >> RANDOM_BITS) + EPOCH_MS) / 1000, UTC)


def _ms(at: datetime) -> int:
    return max(0, int(at.timestamp() * 1000) - EPOCH_MS)


def _first_id(at: datetime) -> int:
    return _ms(at) << RANDOM_BITS


@dataclass(frozen=True)
class Logged:
    """One answered prediction, as the server hands it to the log."""

    id: int
    at: datetime
    version: str
    digit: int
    confidence: float
    runner_up: int
    runner_up_p: float
    image: bytes | None  # 784 raw bytes, row-major uint8, when kept
    sampled: bool  # kept by the random sample (an unbiased sample of the traffic)


@dataclass(frozen=True)
class Window:
    """The predictions of a window, as arrays, with the kept sample's images and the trusted
    labels that name predictions of the window."""

    ids: np.ndarray  # int64 (n,)
    at: np.ndarray  # datetime64[ms] (n,), UTC
    versions: np.ndarray  # object (n,)
    digits: np.ndarray  # int8 (n,)
    confidence: np.ndarray  # float32 (n,)
    runner_up: np.ndarray  # int8 (n,)
    runner_up_p: np.ndarray  # float32 (n,)
    sample_ids: np.ndarray  # int64 (m,): predictions whose image the random sample kept
    sample_images: np.ndarray  # uint8 (m, 28, 28)
    labelled_ids: np.ndarray  # int64 (k,): predictions of the window with a trusted label
    labels: np.ndarray  # int8 (k,)

    def __len__(self) -> int:
        return len(self.ids)

    @property
    def start(self) -> datetime | None:
        return id_time(int(self.ids.min())) if len(self) else None

    @property
    def end(self) -> datetime | None:
        """Just after the last prediction (ids keep milliseconds, answers microseconds)."""
        return id_time(int(self.ids.max())) + timedelta(milliseconds=1) if len(self) else None

    @property
    def live_accuracy(self) -> float | None:
        """Share of the labelled predictions whose digit was right; None without labels."""
        if not len(self.labelled_ids):
            return None
        answered = dict(zip(self.ids.tolist(), self.digits.tolist(), strict=True))
        pairs = zip(self.labelled_ids.tolist(), self.labels.tolist(), strict=True)
        right = [answered[i] == y for i, y in pairs]
        return float(np.mean(right))


@dataclass(frozen=True)
class Queued:
    """A logged prediction worth a person's label."""

    id: int
    at: datetime
    version: str
    digit: int
    confidence: float
    drifted: bool  # made in a window the monitor found drifted
    image: np.ndarray  # uint8 (28, 28)


class PredictionLog:
    """The prediction log in `store`'s database."""

    def __init__(self, store: Store):
        self.store = store

    def _run(self, what: str, work, write: bool = False):
        engine = self.store.engine if write else self.store.reader
        try:
            with engine.begin() as connection:
                return work(connection)
        except SQLAlchemyError as exc:
            message = f"prediction log in {self.store}: cannot {what}: {first_line(exc)}"
            raise MnistError(message) from exc

    def write(self, rows: Sequence[Logged]) -> int:
        """Write `rows` in one transaction; how many were new (a clashing id is skipped)."""
        if not rows:
            return 0
        values = [r.__dict__ for r in rows]
        dialect = self.store.engine.dialect.name
        if dialect in ("sqlite", "postgresql"):
            module = __import__(f"sqlalchemy.dialects.{dialect}", fromlist=["insert"])
            statement = module.insert(Prediction).on_conflict_do_nothing()
        else:
            statement = insert(Prediction)
        return self._run("write", lambda c: c.execute(statement, values).rowcount, write=True)

    def prune(self, before: datetime) -> int:
        """Delete the predictions made before `before`, an hour of them per transaction (a
        long delete would hold SQLite's write lock); how many."""
        end, hour, deleted = _first_id(before), _first_id(datetime(2020, 1, 1, 1, tzinfo=UTC)), 0
        oldest = select(func.min(Prediction.id))
        while (first := self._run("prune", lambda c: c.scalar(oldest))) is not None:
            if first >= end:
                break
            statement = delete(Prediction).where(Prediction.id < min(end, first + hour))
            deleted += self._run("prune", lambda c, s=statement: c.execute(s).rowcount, True)
        return deleted

    def count(self) -> int:
        return self._run("count", lambda c: c.scalar(select(func.count(Prediction.id)))) or 0

    def window(self, since: datetime | None = None, last: int | None = None) -> Window:
        """The predictions made since `since`, or the `last` ones (both: the last ones of
        those), oldest first."""
        query = select(
            *ANSWER,
            Prediction.runner_up,
            Prediction.runner_up_p,
            case((Prediction.sampled, Prediction.image), else_=None).label("image"),
        )
        if since is not None:
            query = query.where(Prediction.id >= _first_id(since))
        query = query.order_by(Prediction.id.desc())
        if last is not None:
            query = query.limit(last)

        def read(connection):
            rows = connection.execute(query).all()[::-1]
            if not rows:
                return rows, []
            labels = connection.execute(
                select(Sample.prediction_id, Sample.label)
                .join(Batch, Batch.id == Sample.batch_id)
                .where(
                    Sample.prediction_id.between(rows[0].id, rows[-1].id),
                    Batch.review.in_(TRAINS),
                    Batch.removed.is_(None),
                )
                .order_by(Sample.id)
            ).all()
            return rows, labels

        rows, labels = self._run("read a window", read)
        kept = [r for r in rows if r.image is not None]
        answered = {r.id for r in rows}  # a label may name a prediction the log never got
        last_label = {i: y for i, y in labels if i in answered}  # the newest label counts
        return Window(
            ids=np.array([r.id for r in rows], np.int64),
            at=np.array([_naive_utc(r.at) for r in rows], "datetime64[ms]"),
            versions=np.array([r.version for r in rows], object),
            digits=np.array([r.digit for r in rows], np.int8),
            confidence=np.array([r.confidence for r in rows], np.float32),
            runner_up=np.array([r.runner_up for r in rows], np.int8),
            runner_up_p=np.array([r.runner_up_p for r in rows], np.float32),
            sample_ids=np.array([r.id for r in kept], np.int64),
            sample_images=_images([r.image for r in kept]),
            labelled_ids=np.array(list(last_label), np.int64),
            labels=np.array(list(last_label.values()), np.int8),
        )

    def images(self, ids: Sequence[int]) -> dict[int, np.ndarray]:
        """The kept images of predictions `ids` (those without one are left out)."""
        found: dict[int, np.ndarray] = {}
        for start in range(0, len(ids), 5000):  # SQLite takes at most 32,766 parameters
            chunk = list(ids[start : start + 5000])
            query = select(Prediction.id, Prediction.image).where(
                Prediction.id.in_(chunk), Prediction.image.is_not(None)
            )
            for row in self._run("read images", lambda c, q=query: c.execute(q).all()):
                found[row.id] = _images([row.image])[0]
        return found

    def queue(self, limit: int = 100, since: datetime | None = None) -> list[Queued]:
        """Predictions worth a label: kept image, no label yet (a rejected one aside), from
        windows the monitor found drifted first, then the least confident."""
        labelled = (
            exists()
            .where(Sample.prediction_id == Prediction.id)
            .where(Sample.batch_id == Batch.id, Batch.review != REJECTED)
        )
        drifted = exists().where(
            MonitorWindow.drift,
            MonitorWindow.start <= Prediction.at,
            MonitorWindow.end >= Prediction.at,
        )
        query = select(
            *ANSWER,
            Prediction.image,
            drifted.label("drifted"),
        ).where(Prediction.image.is_not(None), ~labelled)
        if since is not None:
            query = query.where(Prediction.id >= _first_id(since))
        query = query.order_by(drifted.desc(), Prediction.confidence, Prediction.id).limit(limit)
        rows = self._run("read the queue", lambda c: c.execute(query).all())
        return [
            Queued(
                r.id,
                _utc(r.at),
                r.version,
                r.digit,
                r.confidence,
                bool(r.drifted),
                _images([r.image])[0],
            )
            for r in rows
        ]

    def record(
        self,
        start: datetime,
        end: datetime,
        verdict: str,
        drift: bool,
        predictions: int,
        live_accuracy: float | None,
        run_id: str | None,
    ) -> int:
        """Keep the monitor's verdict on a window; its id."""
        row = dict(
            start=start,
            end=end,
            created=datetime.now(UTC),
            verdict=verdict,
            drift=drift,
            predictions=predictions,
            live_accuracy=live_accuracy,
            run_id=run_id,
        )
        statement = insert(MonitorWindow).values(**row).returning(MonitorWindow.id)
        return self._run("record a window", lambda c: c.execute(statement).scalar_one(), True)

    def windows(self, limit: int = 50) -> list[dict]:
        """The newest recorded windows, newest first, as dicts of their columns."""
        table = MonitorWindow.__table__
        query = select(table).order_by(table.c.id.desc()).limit(limit)
        rows = self._run("read windows", lambda c: c.execute(query).mappings().all())
        return [dict(r) for r in rows]


def _naive_utc(when: datetime) -> datetime:
    """UTC without its zone, for numpy (a PostgreSQL session may hand back another zone)."""
    return _utc(when).astimezone(UTC).replace(tzinfo=None)


ANSWER = (
    Prediction.id,
    Prediction.at,
    Prediction.version,
    Prediction.digit,
    Prediction.confidence,
)
"""The columns of an answer that every read of the log takes."""


def _images(blobs: Sequence[bytes]) -> np.ndarray:
    return np.frombuffer(b"".join(blobs), np.uint8).reshape(-1, IMAGE_SIZE, IMAGE_SIZE)
