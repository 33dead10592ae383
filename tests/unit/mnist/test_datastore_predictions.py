"""The prediction log's table on SQLite: time-ordered ids, windows by time or count with the
kept sample and the trusted labels, the labelling queue's order, pruning, the monitor's
windows. The same SQL runs on PostgreSQL in the monitor's integration tests."""

from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from mnist.datastore import Logged, PredictionLog, Store, new_ids
from mnist.datastore.predictions import id_time
from mnist.errors import MnistError


@pytest.fixture
def log(tmp_path) -> PredictionLog:
    return PredictionLog(Store(f"sqlite:///{tmp_path / 'data.db'}"))


def _rows(at: datetime, n: int, image_every: int = 2) -> list[Logged]:
    rows = []
    for k, i in enumerate(new_ids(n, at)):
        image = np.full((28, 28), k, np.uint8).tobytes() if k % image_every == 0 else None
        confidence = 0.5 + k / (2 * n)
        rows.append(Logged(i, at, "3", k % 10, confidence, (k + 1) % 10, 0.1, image, k % 4 == 0))
    return rows


def test_ids_are_ordered_in_time_and_tell_it():
    earlier, later = datetime(2026, 5, 1, tzinfo=UTC), datetime(2026, 5, 1, 0, 0, 1, tzinfo=UTC)
    a, b = new_ids(500, earlier), new_ids(500, later)
    assert max(a) < min(b) and len(set(a)) == 500
    assert id_time(a[0]) == earlier and id_time(b[-1]) == later
    assert all(0 < i < 2**63 for i in a + b)


def test_a_process_never_gives_one_id_twice_in_a_millisecond():
    """A server's micro-batches answer many images in one millisecond: 20,000 ids there, in
    calls of 64 (independent random bits would clash with odds of about 1 - e^-48)."""
    at = datetime(2026, 5, 1, tzinfo=UTC)
    ids = [i for _ in range(313) for i in new_ids(64, at)]
    assert len(set(ids)) == len(ids) and {id_time(i) for i in ids} == {at}


def test_a_window_is_a_time_or_a_count_with_its_sample_and_labels(log):
    now = datetime.now(UTC)
    old, new = _rows(now - timedelta(hours=30), 40), _rows(now - timedelta(minutes=5), 60)
    assert log.write(old + new) == 100 and log.write(new[:3]) == 0  # a clash is skipped
    window = log.window(since=now - timedelta(hours=24))
    assert window.ids.tolist() == sorted(r.id for r in new)  # in time order (ties: any)
    by_id = {r.id: r for r in new}
    assert window.sample_ids.tolist() == sorted(r.id for r in new if r.sampled)
    assert window.sample_images.shape == (15, 28, 28)
    for i, image in zip(window.sample_ids, window.sample_images, strict=True):
        assert image.tobytes() == by_id[int(i)].image
    assert window.live_accuracy is None
    store = log.store
    image = np.zeros((28, 28), np.uint8)
    store.feedback(image, new[7].digit, trusted=True, prediction_id=new[7].id)  # right
    store.feedback(image, (new[8].digit + 1) % 10, trusted=True, prediction_id=new[8].id)
    store.feedback(image, 0, prediction_id=new[9].id)  # anonymous: not counted
    assert log.window(since=now - timedelta(hours=24)).live_accuracy == 0.5
    last = log.window(last=10)
    assert last.ids.tolist() == sorted(r.id for r in new)[-10:]
    assert len(log.window(since=now + timedelta(minutes=1))) == 0


def test_the_queue_puts_drifted_windows_first_then_the_least_confident(log):
    now = datetime.now(UTC)
    calm, drifted = _rows(now - timedelta(hours=3), 20), _rows(now - timedelta(hours=1), 20)
    log.write(calm + drifted)
    hour = timedelta(minutes=30)
    log.record(now - timedelta(hours=1) - hour, now - hour, "drift", True, 20, None, "r1")
    queue = log.queue(limit=15)
    with_image = [r for r in drifted if r.image is not None]
    assert [q.id for q in queue[:10]] == [r.id for r in with_image]  # the least confident first
    assert all(q.drifted for q in queue[:10]) and not any(q.drifted for q in queue[10:])
    log.store.feedback(np.zeros((28, 28), np.uint8), 1, prediction_id=with_image[0].id)
    assert with_image[0].id not in [q.id for q in log.queue(limit=15)]  # labelled now
    assert log.windows(1)[0]["run_id"] == "r1"


def test_pruning_deletes_what_is_older_an_hour_at_a_time(log):
    now = datetime.now(UTC)
    old = [_rows(now - timedelta(days=40, hours=h), 10) for h in range(3)]
    log.write([r for rows in old for r in rows] + _rows(now, 5))
    assert log.prune(now - timedelta(days=30)) == 30 and log.count() == 5
    assert log.prune(now - timedelta(days=30)) == 0


def test_a_label_naming_a_prediction_the_log_never_got_is_left_out(log):
    now = datetime.now(UTC)
    rows = _rows(now, 10)
    kept = sorted(rows, key=lambda r: r.id)
    lost = kept[5]  # dropped by the writer: between the window's first and last id
    log.write([r for r in rows if r is not lost])
    image = np.zeros((28, 28), np.uint8)
    log.store.feedback(image, 3, trusted=True, prediction_id=lost.id)
    log.store.feedback(image, kept[0].digit, trusted=True, prediction_id=kept[0].id)
    window = log.window(last=10)
    assert window.labelled_ids.tolist() == [kept[0].id] and window.live_accuracy == 1.0


def test_a_log_that_cannot_be_reached_says_so_in_one_line(tmp_path):
    store = Store(f"sqlite:///{tmp_path / 'data.db'}")
    log = PredictionLog(store)
    with store.engine.begin() as c:  # a store damaged by hand
        c.exec_driver_sql("DROP TABLE mnist_predictions")
    with pytest.raises(MnistError, match=r"log in sqlite:///.*: cannot write: .*no such"):
        log.write(_rows(datetime.now(UTC), 2))
