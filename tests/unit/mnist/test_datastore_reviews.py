"""Reviews of added batches: anonymous feedback waits as pending, out of every snapshot and of
the count of new labels, until a person accepts it; a store made before reviews existed is
upgraded in place and keeps its data."""

import time
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest
from sqlalchemy import create_engine, inspect, text

from mnist.datastore import ACCEPTED, PENDING, REJECTED, TRUSTED, Store
from mnist.errors import MnistError


@pytest.fixture
def store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'data.db'}")


def _sample(value: int) -> np.ndarray:
    image = np.zeros((28, 28), np.uint8)
    image[4:24, 10 + value % 8] = 255
    return image


def _in_snapshot(store: Store) -> int:
    snap = store.snapshot()
    return len(snap.train.labels) + len(snap.holdout.labels)


def test_anonymous_feedback_waits_pending_until_accepted(store):
    before = datetime.now(UTC) - timedelta(seconds=1)
    trusted = store.feedback(_sample(1), 1, trusted=True)[1]
    pending = {store.feedback(_sample(v), v, prediction_id=100 + v)[1] for v in range(2, 5)}
    assert len(pending) == 1 and trusted not in pending  # one pending batch a day, apart
    (batch,) = pending
    assert store.batch(batch).review == PENDING and store.batch(trusted).review == TRUSTED
    assert _in_snapshot(store) == 1 and store.new_labels(before) == 1

    accepted = store.accept(batch)
    assert accepted.review == ACCEPTED and accepted.reviewed is not None
    assert _in_snapshot(store) == 4 and store.new_labels(before) == 4
    assert store.new_labels(accepted.reviewed) == 0  # counted once, when accepted
    # new anonymous feedback starts a new pending batch; the accepted one is closed
    assert store.feedback(_sample(5), 5)[1] != batch


def test_rejected_batches_never_train_and_reviews_happen_once(store):
    batch = store.feedback(_sample(3), 3)[1]
    assert store.reject(batch).review == REJECTED
    assert _in_snapshot(store) == 0 and store.new_labels(None) == 0
    with pytest.raises(MnistError, match=f"batch {batch} is rejected .* not pending"):
        store.accept(batch)
    added = store.add(np.stack([_sample(1)]), np.array([1]), "scans", "x")
    with pytest.raises(MnistError, match="is trusted"):
        store.reject(added.id)
    with pytest.raises(MnistError, match="no batch 99"):
        store.accept(99)


def test_samples_name_the_predictions_they_label(store):
    images = np.stack([_sample(v) for v in range(3)])
    batch = store.add(images, np.arange(3), "queue", "dir", prediction_ids=[7, None, 9])
    got, labels, ids = store.samples(batch.id)
    assert np.array_equal(got, images) and labels.tolist() == [0, 1, 2] and len(ids) == 3
    with store.engine.connect() as c:
        linked = c.execute(text("SELECT prediction_id FROM mnist_added_samples ORDER BY id"))
        assert [r[0] for r in linked] == [7, None, 9]
    with pytest.raises(MnistError, match="3 samples but 2 prediction ids"):
        store.add(images, np.arange(3), "queue", "dir", prediction_ids=[1, 2])


def test_a_store_from_before_reviews_is_upgraded_and_keeps_its_data(tmp_path):
    path = tmp_path / "old.db"
    old = create_engine(f"sqlite:///{path}")
    with old.begin() as c:  # the tables as the release before reviews made them
        c.execute(
            text(
                "CREATE TABLE mnist_added_batches (id INTEGER PRIMARY KEY, source VARCHAR(64), "
                "origin TEXT, created DATETIME, removed DATETIME)"
            )
        )
        c.execute(
            text(
                "CREATE TABLE mnist_added_samples (id INTEGER PRIMARY KEY, batch_id INTEGER, "
                "source VARCHAR(64), label INTEGER, pixels BLOB, digest VARCHAR(64), "
                "image VARCHAR(64), holdout BOOLEAN)"
            )
        )
        c.execute(
            text("INSERT INTO mnist_added_batches VALUES (1, 'old', 'x', :t, NULL)"),
            {"t": datetime(2026, 1, 1)},
        )
        c.execute(
            text("INSERT INTO mnist_added_samples VALUES (1, 1, 'old', 4, :p, 'd', 'i', 0)"),
            {"p": _sample(4).tobytes()},
        )
    store = Store(f"sqlite:///{path}")
    columns = {c["name"] for c in inspect(store.engine).get_columns("mnist_added_batches")}
    assert {"review", "reviewed"} <= columns
    assert [b.review for b in store.batches()] == [TRUSTED]  # what was there trained: still does
    assert store.snapshot().train.labels.tolist() == [4]
    assert inspect(store.engine).has_table("mnist_predictions")


def test_feedback_counts_from_when_each_sample_arrived_not_its_batch(store):
    store.feedback(_sample(1), 1, trusted=True)  # today's trusted batch starts
    time.sleep(0.01)
    champion_made = datetime.now(UTC)
    for v in range(2, 5):  # later in the day, into the same batch
        store.feedback(_sample(v), v, trusted=True)
    assert len(store.batches()) == 1 and store.new_labels(champion_made) == 3
