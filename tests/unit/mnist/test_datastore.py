"""The added-data store on a SQLite file (the same tests run on PostgreSQL in
tests/integration/test_datastore_postgres.py): the holdout, removal, refusals; the holdout
rule and the URL shown in messages on their own. Large batches and concurrent writers:
tests/integration/test_datastore_load.py."""

import numpy as np
import pytest

from mnist import datastore
from mnist.datastore import HOLDOUT_EVERY, Store, holdout
from mnist.errors import MnistError


@pytest.fixture
def url(tmp_path) -> str:
    """A fresh store in a SQLite file."""
    return f"sqlite:///{tmp_path / 'data.db'}"


def _digits(mnist_data, start: int, count: int) -> tuple[np.ndarray, np.ndarray]:
    return mnist_data.train.images[start : start + count], mnist_data.train.labels[
        start : start + count
    ]


def _split_of(store: Store) -> dict[str, bool]:
    """Each stored sample's digest -> whether it is held out."""
    snap = store.snapshot()
    out = {}
    for split, held in ((snap.train, False), (snap.holdout, True)):
        for pixels, label in zip(split.images, split.labels, strict=True):
            out[datastore.sample_digest(pixels, int(label))] = held
    return out


def test_the_holdout_is_stratified_and_no_sample_ever_changes_split(url, mnist_data):
    store = Store(url)
    first = store.add(*_digits(mnist_data, 0, 500), "scans", "a.npz")
    assert first.samples == 500 and first.counts == {
        d: int((mnist_data.train.labels[:500] == d).sum()) for d in range(10)
    }
    snap = store.snapshot()
    for d in range(10):  # every fifth sample of each digit, exactly
        assert (snap.holdout.labels == d).sum() == first.counts[d] // HOLDOUT_EVERY
    before = _split_of(store)
    store.add(*_digits(mnist_data, 500, 700), "scans", "b.npz")
    store.add(*_digits(mnist_data, 5000, 300), "phone", "c.npz")
    after = _split_of(store)
    assert len(after) == 1500
    assert {k: after[k] for k in before} == before  # as data grows, nobody moves
    assert 0.18 <= np.mean(list(after.values())) <= 0.2
    holdout = store.snapshot()
    assert set(holdout.holdout_sources) == {"scans", "phone"}


def test_an_identical_sample_takes_the_split_of_the_first(url, mnist_data):
    store = Store(url)
    images, labels = _digits(mnist_data, 0, 50)
    store.add(images, labels, "one", "a")
    store.add(images[::-1], labels[::-1], "two", "b")  # the same samples, other order and source
    snap = store.snapshot()
    held, trained = (
        {datastore.sample_digest(p, int(y)) for p, y in zip(s.images, s.labels, strict=True)}
        for s in (snap.holdout, snap.train)
    )
    assert held and trained and not held & trained  # no image is both trained on and judged on


def test_an_image_sent_again_with_another_label_stays_in_its_split(url, mnist_data):
    store = Store(url)
    images, labels = _digits(mnist_data, 0, 50)
    store.add(images, labels, "one", "a")
    store.add(images, (labels + 1) % 10, "corrections", "b")  # the same images, relabelled
    snap = store.snapshot()
    held = {datastore.sample_digest(p) for p in snap.holdout.images}
    trained = {datastore.sample_digest(p) for p in snap.train.images}
    assert held and trained and not held & trained


def test_a_removed_batch_leaves_the_snapshot_and_stays_in_the_history(url, mnist_data):
    store = Store(url)
    a = store.add(*_digits(mnist_data, 0, 100), "a", "a")
    b = store.add(*_digits(mnist_data, 100, 100), "b", "b")
    both = store.snapshot()
    store.remove(a.id)
    only_b = store.snapshot()
    assert both.batches == (a.id, b.id) and only_b.batches == (b.id,)
    assert len(only_b) == 100 and only_b.digest != both.digest
    assert [x.removed is not None for x in store.batches()] == [True, False]
    with pytest.raises(MnistError, match=f"batch {a.id} was already removed"):
        store.remove(a.id)
    with pytest.raises(MnistError, match="no batch 99"):
        store.remove(99)
    assert store.snapshot().digest == only_b.digest  # a snapshot's digest names its content
    assert Store(url).snapshot().digest == only_b.digest


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / "not-a-db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(MnistError, match=r"added-data store sqlite:///.*not-a-db"):
        Store(f"sqlite:///{tmp_path / 'not-a-db'}")
    with pytest.raises(MnistError, match=r"postgresql://me:\*\*\*@"):
        Store("postgresql://me:secret@127.0.0.1:1/nothing")
    with pytest.raises(MnistError, match="source name"):
        datastore.check_source("../etc")


def test_the_rule_holds_out_every_fifth_of_each_digit_in_digest_order():
    digests = [f"{i:02d}" for i in range(20)][::-1]  # stored in reverse digest order
    labels = [i % 2 for i in range(20)]
    images = [f"image-{i}" for i in range(20)]
    held = holdout.assign(labels, digests, images, counts={}, known={})
    by_digest = sorted(range(20), key=lambda i: digests[i])
    for digit in (0, 1):
        mine = [held[i] for i in by_digest if labels[i] == digit]
        assert mine == [n % HOLDOUT_EVERY == HOLDOUT_EVERY - 1 for n in range(10)]


def test_the_rule_continues_a_source_and_keeps_a_known_image_in_its_split():
    counts, known = {3: 4}, {"seen-before": False}
    held = holdout.assign([3, 3, 3], ["a", "b", "c"], ["new", "seen-before", "new"], counts, known)
    # ordinal 4 is held out; a known image keeps its split; a repeat takes its first copy's
    assert held == [True, False, True] and counts == {3: 7}


@pytest.mark.parametrize(
    ("url", "shown"),
    [
        (
            "postgresql://me:secret@db.example:5432/mnist",
            "postgresql://me:***@db.example:5432/mnist",
        ),
        ("postgresql+psycopg://me:p%40ss@h/d", "postgresql+psycopg://me:***@h/d"),
        ("postgresql://me@h/d", "postgresql://me@h/d"),
        ("sqlite:////tmp/ü/data.db", "sqlite:////tmp/ü/data.db"),
        ("not a url", "not a url"),
        ("postgresql://me:secret@h:port/d", "postgresql://me:***@h:port/d"),  # a bad port
    ],
)
def test_a_url_is_shown_without_its_password(url, shown):
    assert datastore.safe_url(url) == shown
