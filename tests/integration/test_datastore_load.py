"""The added-data store under load, on SQLite and on a real PostgreSQL server: a batch larger
than SQLite's parameter limit is one transaction; writers in separate processes take turns."""

import subprocess
import sys

import pytest

from mnist import datastore
from mnist.datastore import HOLDOUT_EVERY, Store


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh store: a SQLite file, or a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url(f"t{abs(hash(request.node.nodeid))}")


def test_a_big_batch_is_one_transaction(url, mnist_data):
    images, labels = mnist_data.train.images[:40000], mnist_data.train.labels[:40000]
    batch = Store(url).add(images, labels, "big", "mnist")  # more samples than SQLite parameters
    assert batch.samples == 40000 and Store(url).count() == 40000


WRITER = """
import sys
import numpy as np
from mnist.datastore import Store
store, rng = Store(sys.argv[1]), np.random.default_rng(int(sys.argv[2]))
for i in range(int(sys.argv[3])):
    pixels = rng.integers(1, 256, (28, 28))
    if i % 10 == 9:
        store.add(pixels[None], np.array([i % 10]), "writer", "test")
    else:
        store.feedback(pixels, i % 10, trusted=True)
"""


def test_two_writers_at_once_lose_nothing(url):
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", WRITER, url, str(seed), "150"], stderr=subprocess.PIPE, text=True
        )
        for seed in (1, 2)
    ]
    for proc in procs:
        assert proc.wait(timeout=300) == 0, proc.stderr.read()
    store = Store(url)
    assert store.count() == 300
    feedback = [b for b in store.batches() if b.source == datastore.FEEDBACK]
    assert len(feedback) == 1 and feedback[0].samples == 270  # writers took turns
    snap = store.snapshot()
    assert len(snap) == 300
    for d in range(10):  # the holdout's ordinals did not race: every fifth of each digit
        of_digit = (snap.train.labels == d).sum() + (snap.holdout.labels == d).sum()
        assert (snap.holdout.labels == d).sum() == of_digit // HOLDOUT_EVERY
