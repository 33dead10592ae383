"""The prediction log's writer: `LogWriter` takes each answer of `mnist serve` off the request
path (`record` only queues it, never blocks, never raises) and a daemon thread writes what is
queued in batches to the log (`mnist.datastore.PredictionLog`), keeps the image of a random
share and of every low-confidence answer (`Sampling`), prunes old rows about hourly, and counts
what it could not queue or write (`stats`), saying so in the log at most once a minute.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import NamedTuple, Protocol

import numpy as np

from mnist.datastore.predictions import Logged
from mnist.errors import MnistError, first_line

log = logging.getLogger(__name__)

BATCH_ROWS = 500
"""Most rows in one write (one transaction)."""
INTERVAL = 0.5
"""Seconds between writes when fewer than `BATCH_ROWS` rows wait."""
MAX_ROWS = 20_000
"""Rows waiting at most; more are dropped (and counted) while the store is slow or down."""
PRUNE_EVERY = 3600.0
"""Seconds between prunes of rows older than the days kept."""
REOPEN_AFTER = 5.0
"""Seconds before a store that could not be opened is tried again."""
REPORT_EVERY = 60.0
"""Seconds between two warnings about dropped rows."""
UNSURE_PER_MINUTE = 300
"""Most images kept a minute for low confidence alone: whoever sends noise to /predict gets
unsure answers, and must not fill the disk with their images (the random share is bounded by
the traffic's own size)."""


class Sink(Protocol):
    """Where the rows go: `mnist.datastore.PredictionLog` (or anything with its two calls)."""

    def write(self, rows: Sequence[Logged]) -> object: ...

    def prune(self, before: datetime) -> int: ...


@dataclass(frozen=True)
class Sampling:
    """Which images are kept: a random `images` share (`sampled`: an unbiased sample of the
    traffic) and every answer less confident than `confidence` (for the labelling queue)."""

    images: float = 0.1
    confidence: float = 0.9


@dataclass(frozen=True)
class Stats:
    """What the writer has done: rows written, dropped (not queued or not written), waiting,
    and the last error of the store (None once a write succeeds again)."""

    written: int
    dropped: int
    queued: int
    last_error: str | None


class _Answered(NamedTuple):
    ids: Sequence[int]
    images: np.ndarray  # (n, 28, 28) pixels as the model saw them, 0-255
    probabilities: np.ndarray  # (n, 10)
    version: str
    at: float  # seconds since the epoch


def to_rows(
    answered: Sequence[_Answered],
    sampling: Sampling,
    rng: np.random.Generator,
    unsure: int = UNSURE_PER_MINUTE,
) -> list[Logged]:
    """The log rows of queued answers: the two likeliest digits, and the image (784 bytes) of
    the random share (`sampled`) and of the first `unsure` answers below the confidence
    threshold."""
    if not answered:
        return []
    probabilities = np.concatenate([a.probabilities for a in answered]).astype(np.float32)
    n = len(probabilities)
    order = np.argsort(probabilities, axis=1)
    digit, runner_up = order[:, -1], order[:, -2]
    rows_ = np.arange(n)
    confidence, runner_up_p = probabilities[rows_, digit], probabilities[rows_, runner_up]
    sampled = rng.random(n) < sampling.images
    unsure_only = np.flatnonzero(~sampled & (confidence < sampling.confidence))
    keep = sampled.copy()
    keep[unsure_only[: max(unsure, 0)]] = True
    images: list[bytes | None] = [None] * n
    if keep.any():
        pixels = np.concatenate([a.images for a in answered])[keep]
        flat = np.rint(pixels).clip(0, 255).astype(np.uint8).reshape(len(pixels), -1)
        for i, row in zip(np.flatnonzero(keep), flat, strict=True):
            images[i] = row.tobytes()
    out, i = [], 0
    for a in answered:
        at = datetime.fromtimestamp(a.at, UTC)
        for id_ in a.ids:
            out.append(
                Logged(
                    id=int(id_),
                    at=at,
                    version=a.version,
                    digit=int(digit[i]),
                    confidence=float(confidence[i]),
                    runner_up=int(runner_up[i]),
                    runner_up_p=float(runner_up_p[i]),
                    image=images[i],
                    sampled=bool(sampled[i]),
                )
            )
            i += 1
    return out


class LogWriter:
    """Writes answers to the sink that `open_sink` opens (in the writer thread, retried when
    it fails), in batches of up to `batch_rows` or every `interval` seconds; rows older than
    `keep_days` are pruned every `prune_every` seconds. `record` is for the request path."""

    def __init__(
        self,
        open_sink: Callable[[], Sink],
        keep_days: float,
        sampling: Sampling | None = None,
        *,
        batch_rows: int = BATCH_ROWS,
        interval: float = INTERVAL,
        max_rows: int = MAX_ROWS,
        prune_every: float = PRUNE_EVERY,
        seed: int | None = None,
    ):
        self.open_sink, self.keep_days = open_sink, keep_days
        self.sampling = sampling or Sampling()
        self.batch_rows, self.interval, self.max_rows = batch_rows, interval, max_rows
        self.prune_every = prune_every
        self._rng = np.random.default_rng(seed)
        self._lock = threading.Lock()
        self._wake, self._stop = threading.Event(), threading.Event()
        self._waiting: list[_Answered] = []
        self._queued = self._written = self._dropped = self._unreported = 0
        self._closed = False
        self._error: str | None = None
        self._sink: Sink | None = None
        self._opened_at = float("-inf")  # monotonic time of the last attempt to open
        self._reported_at = float("-inf")
        self._pruned_at: float | None = None
        self._minute_started, self._unsure_kept = float("-inf"), 0
        self._thread = threading.Thread(target=self._run, name="prediction-log", daemon=True)

    @property
    def stats(self) -> Stats:
        with self._lock:
            return Stats(self._written, self._dropped, self._queued, self._error)

    def start(self) -> None:
        self._thread.start()

    def record(
        self,
        ids: Sequence[int],
        images: np.ndarray,
        probabilities: np.ndarray,
        version: str,
        at: float | None = None,
    ) -> None:
        """Queue the answers `ids` (their images and probabilities); dropped, counted, when the
        queue is full or the writer closed. Never blocks on the store, never raises."""
        n = len(ids)
        with self._lock:
            if self._closed or self._queued + n > self.max_rows:
                self._dropped += n
                self._unreported += n
                return
            self._waiting.append(
                _Answered(ids, images, probabilities, version, time.time() if at is None else at)
            )
            self._queued += n
            full = self._queued >= self.batch_rows
        if full:
            self._wake.set()

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued, for at most `timeout` seconds; what is left then is dropped
        (counted and logged), and the thread, a daemon, is left to the process's exit."""
        with self._lock:
            self._closed = True
        self._stop.set()
        self._wake.set()
        if self._thread.is_alive():
            self._thread.join(timeout)
        if self._thread.is_alive():
            with self._lock:
                left, self._waiting, self._queued = self._queued, [], 0
                self._dropped += left
                self._unreported += left
        self._report(force=True)

    def _run(self) -> None:
        while True:
            self._wake.wait(self.interval)
            self._wake.clear()
            stopping = self._stop.is_set()
            try:
                self._flush(time.monotonic() + 1.5 if stopping else None)
                if not stopping:
                    self._maybe_prune()
            except Exception as exc:  # never let the thread die: count, say, go on
                self._failed("prediction log", exc)
            self._report()
            if stopping:
                return

    def _take(self) -> list[_Answered]:
        with self._lock:
            taken, self._waiting, self._queued = self._waiting, [], 0
        return taken

    def _flush(self, deadline: float | None) -> None:
        """Write everything queued, `batch_rows` at a time; after a failure (or past the
        deadline, at shutdown) the rest of what was taken is dropped."""
        now = time.monotonic()
        if now - self._minute_started >= 60:
            self._minute_started, self._unsure_kept = now, 0
        rows = to_rows(
            self._take(), self.sampling, self._rng, UNSURE_PER_MINUTE - self._unsure_kept
        )
        self._unsure_kept += sum(1 for r in rows if r.image is not None and not r.sampled)
        for start in range(0, len(rows), self.batch_rows):
            chunk = rows[start : start + self.batch_rows]
            late = deadline is not None and time.monotonic() > deadline
            if late or not self._write(chunk):
                self._drop(len(rows) - start)
                return

    def _open(self) -> Sink | None:
        if self._sink is None and time.monotonic() - self._opened_at >= REOPEN_AFTER:
            self._opened_at = time.monotonic()
            try:
                self._sink = self.open_sink()
            except Exception as exc:
                self._failed("cannot open the prediction log", exc)
        return self._sink

    def _write(self, rows: list[Logged]) -> bool:
        sink = self._open()
        if sink is None:
            return False
        try:
            sink.write(rows)
        except Exception as exc:
            self._failed("cannot write to the prediction log", exc)
            return False
        with self._lock:
            self._written += len(rows)
            self._error = None
        return True

    def _maybe_prune(self) -> None:
        now = time.monotonic()
        if self._pruned_at is not None and now - self._pruned_at < self.prune_every:
            return
        sink = self._open()
        if sink is None:
            return
        self._pruned_at = now
        before = datetime.now(UTC) - timedelta(days=self.keep_days)
        try:
            pruned = sink.prune(before)
        except Exception as exc:
            self._failed("cannot prune the prediction log", exc)
            return
        if pruned:
            log.info("prediction log: %d predictions older than %s pruned", pruned, before)

    def _drop(self, n: int) -> None:
        with self._lock:
            self._dropped += n
            self._unreported += n

    def _failed(self, what: str, exc: Exception) -> None:
        mine = isinstance(exc, MnistError)
        text = first_line(exc) if mine else f"{type(exc).__name__}: {first_line(exc)}"
        with self._lock:
            self._error = f"{what}: {text}"

    def _report(self, force: bool = False) -> None:
        """Warn about rows dropped since the last warning, at most once every REPORT_EVERY s."""
        now = time.monotonic()
        with self._lock:
            if not self._unreported or (not force and now - self._reported_at < REPORT_EVERY):
                return
            dropped, self._unreported, self._reported_at = self._unreported, 0, now
            error = self._error
        log.warning(
            "prediction log: %d prediction(s) dropped (%s)",
            dropped,
            error or "the queue was full or the server stopping",
        )
