"""The added-data store and `mnist data`: a real SQLite database, real files, real processes."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist import datastore, intake
from mnist.datastore import HOLDOUT_EVERY, Store
from mnist.errors import MnistError

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh store: a SQLite file, or a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url(f"t{abs(hash(request.node.nodeid))}")


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


def test_a_big_batch_is_one_transaction(url, mnist_data):
    images, labels = mnist_data.train.images[:40000], mnist_data.train.labels[:40000]
    batch = Store(url).add(images, labels, "big", "mnist")  # more samples than SQLite parameters
    assert batch.samples == 40000 and Store(url).count() == 40000


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
        store.feedback(pixels, i % 10)
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


def test_a_store_that_cannot_be_opened_is_one_line(tmp_path):
    (tmp_path / "not-a-db").write_bytes(b"this is not a database" * 100)
    with pytest.raises(MnistError, match=r"added-data store sqlite:///.*not-a-db"):
        Store(f"sqlite:///{tmp_path / 'not-a-db'}")
    with pytest.raises(MnistError, match=r"postgresql://me:\*\*\*@"):
        Store("postgresql://me:secret@127.0.0.1:1/nothing")
    with pytest.raises(MnistError, match="source name"):
        datastore.check_source("../etc")


def _png(path: Path, pixels: np.ndarray, scale: int = 1) -> Path:
    img = Image.fromarray(pixels.astype(np.uint8))
    img.resize((28 * scale, 28 * scale)).save(path)
    return path


@pytest.fixture
def inputs(tmp_path, mnist_data) -> Path:
    """Every accepted kind of input, with some bad samples among them."""
    images, labels = _digits(mnist_data, 0, 40)
    root = tmp_path / "inputs"
    for i, (pixels, label) in enumerate(zip(images[:20], labels[:20], strict=True)):
        (root / "folder" / str(label)).mkdir(parents=True, exist_ok=True)
        _png(root / "folder" / str(label) / f"{i}.png", pixels, scale=4)
    _png(root / "folder" / "3" / "blank.png", np.zeros((28, 28)))
    (root / "folder" / "3" / "notes.txt").write_text("not an image")
    rows = np.column_stack([labels[20:30], images[20:30].reshape(10, -1)]).astype(float)
    rows[1, 0], rows[2, 100] = 12, np.nan
    np.savetxt(root / "rows.csv", rows, delimiter=",", fmt="%g")
    np.savez(root / "arrays.npz", x=images[30:40], y=labels[30:40])
    _png(root / "seven.png", 255 - images[0], scale=8)  # a dark digit on white paper
    return root


def _mnist(*args: str, url: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [str(BIN / "mnist"), "data", *args, "--datastore", url],
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_data_add_names_what_it_rejected_and_stores_nothing_unless_told(inputs, url):
    refused = _mnist("add", str(inputs / "folder"), url=url)
    assert refused.returncode == 1 and "Traceback" not in refused.stderr
    assert refused.stderr.startswith("mnist: error: 2 input(s) rejected, first ")
    assert "nothing was added" in refused.stderr
    csv = _mnist("add", str(inputs / "rows.csv"), url=url)
    assert csv.returncode == 1 and "1 NaN pixel(s), 1 label(s) outside 0-9" in csv.stderr
    assert Store(url).count() == 0

    added = _mnist(
        "add", str(inputs / "folder"), "--nan-policy", "drop", "--source", "scans", url=url
    )
    assert added.returncode == 0, added.stderr
    assert "blank.png: the image is blank (no digit found)" in added.stdout
    assert "notes.txt: not a PNG or JPEG file" in added.stdout
    assert "added batch 1 (scans): 20 samples" in added.stdout
    dropped = _mnist("add", str(inputs / "rows.csv"), "--nan-policy", "drop", url=url)
    assert "added batch 2 (rows): 8 samples" in dropped.stdout
    npz = _mnist("add", str(inputs / "arrays.npz"), url=url)
    assert "added batch 3 (arrays): 10 samples" in npz.stdout
    seven = _mnist("add", str(inputs / "seven.png"), "--label", "5", url=url)
    assert "added batch 4 (seven): 1 samples (5: 1)" in seven.stdout

    listed = _mnist("list", url=url).stdout.splitlines()
    assert listed[0].split()[:4] == ["batch", "source", "samples", "0"]
    assert [line.split()[1] for line in listed[1:]] == ["scans", "rows", "arrays", "seven"]
    assert _mnist("remove", "2", url=url).returncode == 0
    assert "removed" in _mnist("list", url=url).stdout.splitlines()[2]
    assert len(Store(url).snapshot()) == 31


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["seven.png"], "give the digit of image files with --label"),
        (["seven.png", "--label", "12"], "--label: expected a digit 0-9, got '12'"),
        (["rows.csv", "--label", "3"], "--label is for image files"),
        (["missing.npz"], "missing.npz: no such file or folder"),
        (["seven.png", "--label", "1", "--source", "a/b"], "source name 'a/b'"),
    ],
)
def test_data_add_refuses_bad_arguments_in_one_line(inputs, url, args, message):
    proc = subprocess.run(
        [str(BIN / "mnist"), "data", "add", *args, "--datastore", url],
        capture_output=True,
        text=True,
        timeout=300,
        cwd=inputs,
    )
    assert proc.returncode in (1, 2) and message in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


def test_images_are_prepared_like_predict_inputs(inputs, mnist_data):
    found = intake.read([inputs / "seven.png"], label=7)
    image = found.images[0]
    assert image.shape == (28, 28) and image.max() == pytest.approx(255, abs=1)
    assert image[0].max() == 0  # a dark digit on white, inverted and centred like MNIST
    assert found.counts()[7] == 1


def test_npz_labels_must_be_one_number_per_image(tmp_path):
    np.savez(tmp_path / "bad.npz", x=np.zeros((3, 28, 28)), y=np.zeros((3, 2)))
    with pytest.raises(MnistError, match=r"'y' must hold one number per image \(3\)"):
        intake.read([tmp_path / "bad.npz"])
    np.savez(tmp_path / "half.npz", x=np.full((2, 28, 28), 9.0), y=np.array([3.5, 2]))
    found = intake.read([tmp_path / "half.npz"], policy="drop")
    assert found.labels.tolist() == [2] and "label(s) outside 0-9" in found.rejected[0][1]


def test_environment_names_the_store(tmp_path, url):
    env = {**os.environ, "MNIST_DATASTORE": url}
    proc = subprocess.run(
        [str(BIN / "mnist"), "data", "list"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.stdout.strip() == f"{url}: no batches"
