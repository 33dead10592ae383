"""The prediction log's writer on a real SQLite log: rows in batches off the caller's thread,
the image-keeping rule, a bounded queue and counted drops when the store is slow, failing or
cannot open, pruning of old rows, and a flush at close that never hangs."""

from __future__ import annotations

import logging
import threading
import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mnist.datastore import Store
from mnist.datastore.predictions import PredictionLog, new_ids
from mnist.errors import MnistError
from mnist.prediction_log import LogWriter, Sampling, _Answered, to_rows


def _answers(n: int, confidence: float = 0.99, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """`n` images (0-255 floats) and probabilities whose top digit is i % 10 at `confidence`
    and runner-up (i + 1) % 10 with the rest."""
    rng = np.random.default_rng(seed)
    images = rng.uniform(0, 255, (n, 28, 28)).astype(np.float32)
    p = np.zeros((n, 10), np.float32)
    p[np.arange(n), np.arange(n) % 10] = confidence
    p[np.arange(n), (np.arange(n) + 1) % 10] = 1 - confidence
    return images, p


class Counted(PredictionLog):
    """The real log, remembering the size of each write."""

    def __init__(self, store: Store):
        super().__init__(store)
        self.writes: list[int] = []

    def write(self, rows):
        self.writes.append(len(rows))
        return super().write(rows)


class Failing(PredictionLog):
    """The real log whose writes fail while `down` is set, or wait while `held` is clear."""

    def __init__(self, store: Store):
        super().__init__(store)
        self.down = threading.Event()
        self.held = threading.Event()
        self.held.set()

    def write(self, rows):
        self.held.wait(10)
        if self.down.is_set():
            raise MnistError("prediction log in test: cannot write: database is locked")
        return super().write(rows)


@pytest.fixture
def url(tmp_path) -> str:
    return f"sqlite:///{tmp_path / 'log.db'}"


def _until(condition, seconds: float = 5.0) -> None:
    deadline = time.monotonic() + seconds
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


def test_rows_name_the_two_likeliest_digits_and_keep_images_by_the_rule():
    images, p = _answers(20, confidence=0.95)
    p[:5] = 0.1  # five answers of no confidence: always keep their image
    p[:5, 3] = 0.19
    answered = [_Answered(new_ids(20), images, p, "7", time.time())]
    rows = to_rows(answered, Sampling(images=0.0, confidence=0.9), np.random.default_rng(0))
    assert [r.digit for r in rows[5:]] == [i % 10 for i in range(5, 20)]
    assert [r.runner_up for r in rows[5:]] == [(i + 1) % 10 for i in range(5, 20)]
    assert rows[6].confidence == pytest.approx(0.95) and rows[6].runner_up_p == pytest.approx(0.05)
    assert {r.version for r in rows} == {"7"}
    kept = [r.image is not None for r in rows]
    assert kept == [True] * 5 + [False] * 15 and not any(r.sampled for r in rows)
    expected = np.rint(images[0]).clip(0, 255).astype(np.uint8).tobytes()
    assert rows[0].image == expected and len(rows[0].image or b"") == 784
    every = to_rows(answered, Sampling(images=1.0), np.random.default_rng(0))
    assert all(r.sampled and r.image is not None for r in every)


def test_images_kept_for_low_confidence_alone_are_capped():
    images, p = _answers(50, confidence=0.95)
    p[:] = 0.1  # noise: every answer unsure
    answered = [_Answered(new_ids(50), images, p, "7", time.time())]
    rows = to_rows(answered, Sampling(images=0.0), np.random.default_rng(0), unsure=20)
    assert sum(r.image is not None for r in rows) == 20 and len(rows) == 50
    none_left = to_rows(answered, Sampling(images=0.0), np.random.default_rng(0), unsure=0)
    assert all(r.image is None for r in none_left)


def test_the_random_share_of_images_is_kept_and_marked_sampled():
    images, p = _answers(4000)
    answered = [_Answered(new_ids(4000), images, p, "", time.time())]
    rows = to_rows(answered, Sampling(images=0.1, confidence=0.5), np.random.default_rng(1))
    sampled = np.array([r.sampled for r in rows])
    assert 0.08 < sampled.mean() < 0.12
    assert all((r.image is not None) == r.sampled for r in rows)


def test_rows_are_written_in_batches_off_the_callers_thread(url):
    sink = Counted(Store(url))
    writer = LogWriter(lambda: sink, 30, batch_rows=500, interval=30)
    writer.start()
    images, p = _answers(1200)
    started = time.perf_counter()
    for i in range(0, 1200, 100):
        writer.record(new_ids(100), images[i : i + 100], p[i : i + 100], "3")
    assert time.perf_counter() - started < 0.5  # queued, not written, by the caller
    _until(lambda: writer.stats.written == 1200)  # a full batch wakes the writer: no 30 s wait
    writer.close()
    assert max(sink.writes) == 500 and len(sink.writes) >= 3 and sum(sink.writes) == 1200
    assert PredictionLog(Store(url)).count() == 1200
    assert writer.stats.dropped == 0 and writer.stats.last_error is None


def test_what_is_queued_is_written_at_close(url):
    writer = LogWriter(lambda: PredictionLog(Store(url)), 30, interval=60)
    writer.start()
    images, p = _answers(10)
    writer.record(new_ids(10), images, p, "1")
    started = time.monotonic()
    writer.close()
    assert time.monotonic() - started < 2
    assert PredictionLog(Store(url)).count() == 10 and writer.stats.written == 10


def test_a_store_that_cannot_open_costs_the_rows_not_the_caller(tmp_path, caplog):
    (tmp_path / "a-file").write_text("")  # where the store's directory would be
    url = f"sqlite:///{tmp_path / 'a-file' / 'log.db'}"
    writer = LogWriter(lambda: PredictionLog(Store(url)), 30, interval=0.05)
    writer.start()
    images, p = _answers(30)
    with caplog.at_level(logging.WARNING, "mnist.prediction_log"):
        for i in range(3):
            writer.record(new_ids(10), images[i * 10 : i * 10 + 10], p[i * 10 : i * 10 + 10], "")
            time.sleep(0.1)
        _until(lambda: writer.stats.dropped == 30)
        writer.close()
    stats = writer.stats
    assert stats.written == 0 and stats.dropped == 30
    assert stats.last_error and stats.last_error.startswith("cannot open the prediction log")
    warnings = [r.getMessage() for r in caplog.records]
    assert len(warnings) == 2  # the first drop at once; the rest at close, not one per batch
    assert "prediction(s) dropped (cannot open the prediction log" in warnings[0]


def test_a_slow_store_fills_the_bounded_queue_and_the_rest_is_dropped(url):
    sink = Failing(Store(url))
    sink.held.clear()  # every write waits: a store that hangs
    writer = LogWriter(lambda: sink, 30, batch_rows=10, interval=0.01, max_rows=100)
    writer.start()
    images, p = _answers(10)
    writer.record(new_ids(10), images, p, "")  # the writer takes it and hangs on it
    _until(lambda: writer.stats.queued == 0)
    started = time.perf_counter()
    for _ in range(15):
        writer.record(new_ids(10), images, p, "")
    assert time.perf_counter() - started < 0.1  # never waits for the store
    assert writer.stats.queued == 100 and writer.stats.dropped == 50
    sink.held.set()
    _until(lambda: writer.stats.written == 110)
    writer.close()
    assert PredictionLog(Store(url)).count() == 110


def test_failed_writes_are_counted_and_the_error_clears_when_the_store_is_back(url):
    sink = Failing(Store(url))
    sink.down.set()
    writer = LogWriter(lambda: sink, 30, interval=0.02)
    writer.start()
    images, p = _answers(10)
    writer.record(new_ids(10), images, p, "")
    _until(lambda: writer.stats.dropped == 10)
    assert "database is locked" in (writer.stats.last_error or "")
    sink.down.clear()
    writer.record(new_ids(10), images, p, "")
    _until(lambda: writer.stats.written == 10)
    writer.close()
    assert writer.stats.last_error is None and writer.stats.dropped == 10


def test_close_never_hangs_on_a_store_that_does(url):
    sink = Failing(Store(url))
    sink.held.clear()
    writer = LogWriter(lambda: sink, 30, batch_rows=5, interval=0.01)
    writer.start()
    images, p = _answers(10)
    writer.record(new_ids(5), images[:5], p[:5], "")
    _until(lambda: writer.stats.queued == 0)  # taken; its write hangs
    writer.record(new_ids(5), images[5:], p[5:], "")
    started = time.monotonic()
    writer.close(timeout=0.3)
    assert time.monotonic() - started < 1
    assert writer.stats.dropped == 5  # what was still queued
    writer.record(new_ids(1), images[:1], p[:1], "")  # after close: dropped, no error
    assert writer.stats.dropped == 6
    sink.held.set()


def test_rows_older_than_the_days_kept_are_pruned(url):
    log = PredictionLog(Store(url))
    images, p = _answers(6)
    old = datetime.now(UTC) - timedelta(days=31)
    writer = LogWriter(lambda: log, 30, interval=0.02, prune_every=3600)
    for at, part in ((old, slice(0, 4)), (datetime.now(UTC), slice(4, 6))):
        n = part.stop - part.start
        rows = to_rows(
            [_Answered(new_ids(n, at), images[part], p[part], "", at.timestamp())],
            Sampling(),
            np.random.default_rng(0),
        )
        log.write(rows)
    assert log.count() == 6
    writer.start()  # prunes once it has opened the log, then every hour
    _until(lambda: log.count() == 2)
    writer.close()
