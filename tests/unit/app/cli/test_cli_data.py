"""`mnist data list|accept|reject|review` (`app/cli/data.py`, `app/cli/labels.py`) on a SQLite
store: the review column and its hint, a pending batch accepted or rejected once, its images
exported for a look, never over existing files; every refusal one line."""

import numpy as np
import pytest
from PIL import Image

from app.cli import main
from mnist.datastore import Store


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    """A fresh store in a SQLite file; no Prefect API to send events to."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return f"sqlite:///{tmp_path / 'data.db'}"


@pytest.fixture
def pending(url, mnist_data) -> int:
    """A trusted batch 1 of 10 samples, then a pending batch 2 of 6 (anonymous feedback)."""
    store = Store(url)
    images, labels = mnist_data.train.images, mnist_data.train.labels
    store.add(images[:10], labels[:10], "scans", "scans.npz")
    for i in range(10, 16):
        store.feedback(images[i], int(labels[i]), trusted=False)
    return 2


def data(url: str, *args: str) -> int:
    return main(["data", *args, "--datastore", url])


def test_list_marks_pending_batches_and_says_what_to_do(url, pending, capsys):
    assert data(url, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[-2:] == ["status", "review"]
    assert lines[1].split()[-1] == "trusted" and lines[2].split()[-1] == "PENDING"
    assert lines[-1] == (
        "6 samples wait for review (batch 2): mnist data review BATCH --export DIR, then "
        "mnist data accept|reject BATCH"
    )
    assert data(url, "accept", "2") == 0
    capsys.readouterr()
    assert data(url, "list") == 0
    lines = capsys.readouterr().out.splitlines()
    assert len(lines) == 3 and lines[2].split()[-3] == "accepted"


def test_accept_makes_a_pending_batch_train_once(url, pending, capsys):
    store = Store(url)
    assert len(store.snapshot()) == 10 and store.new_labels(None) == 10
    assert data(url, "accept", str(pending)) == 0
    out = capsys.readouterr().out.strip()
    assert out.startswith("accepted batch 2 (feedback-anonymous, 6 samples): it trains")
    assert len(store.snapshot()) == 16 and store.new_labels(None) == 16
    assert store.batch(pending).reviewed is not None
    assert data(url, "accept", str(pending)) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "batch 2 is accepted on " in err[0] and "not pending" in err[0]


def test_reject_keeps_a_pending_batch_out_of_training(url, pending, capsys):
    assert data(url, "reject", str(pending)) == 0
    out = capsys.readouterr().out.strip()
    assert out == (
        "rejected batch 2 (feedback-anonymous, 6 samples): it never trains; "
        "it stays in the store's history"
    )
    store = Store(url)
    assert len(store.snapshot()) == 10 and store.new_labels(None) == 10
    assert store.batch(pending).review == "rejected"
    assert data(url, "accept", str(pending)) == 1  # a rejected batch stays rejected
    assert "batch 2 is rejected" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("args", "status", "message"),
    [
        (["accept", "9"], 1, "mnist: error: no batch 9 in "),
        (["reject", "1"], 1, "mnist: error: batch 1 is trusted, not pending"),
        (["review", "9", "--export", "out"], 1, "mnist: error: no batch 9 in "),
    ],
)
def test_refusals_are_one_line(url, pending, tmp_path, capsys, args, status, message):
    if "--export" in args:
        args = [*args[:-1], str(tmp_path / args[-1])]
    assert data(url, *args) == status
    err = capsys.readouterr().err
    assert err.startswith(message) and len(err.strip().splitlines()) == 1
    assert not (tmp_path / "out").exists()


def test_review_exports_each_image_by_label_pixel_for_pixel(url, pending, tmp_path, capsys):
    dest = tmp_path / "look"
    assert data(url, "review", str(pending), "--export", str(dest)) == 0
    out = capsys.readouterr().out.splitlines()
    images, labels, ids = Store(url).samples(pending)
    counts = ", ".join(f"{d}: {n}" for d in range(10) if (n := int((labels == d).sum())))
    assert out[0] == (
        f"wrote 6 images of batch 2 (feedback-anonymous, pending) as "
        f"{dest}/<label>/<sample id>.png: " + counts
    )
    assert out[1] == "look at them, then: mnist data accept 2, or mnist data reject 2"
    written = sorted(dest.glob("*/*.png"))
    assert len(written) == 6
    for image, label, sample in zip(images, labels, ids, strict=True):
        png = Image.open(dest / str(label) / f"{sample}.png")
        assert png.mode == "L" and png.size == (28, 28)
        assert np.array_equal(np.asarray(png), image)  # white digit on black, as stored
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_review_never_overwrites_and_writes_nothing_then(url, pending, tmp_path, capsys):
    dest = tmp_path / "look"
    _, labels, ids = Store(url).samples(pending)
    clash = dest / str(labels[3]) / f"{ids[3]}.png"
    clash.parent.mkdir(parents=True)
    clash.write_bytes(b"mine")
    assert data(url, "review", str(pending), "--export", str(dest)) == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mnist: error: {clash} exists (1 file(s) would be overwritten): nothing was written; "
        "export into a new or empty folder"
    )
    assert [p for p in dest.rglob("*") if p.is_file()] == [clash] and clash.read_bytes() == b"mine"
    clash.unlink()  # an existing folder is fine: the export joins it
    assert data(url, "review", str(pending), "--export", str(dest)) == 0
    assert len(list(dest.glob("*/*.png"))) == 6
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == []


def test_a_file_in_the_way_is_one_line(url, pending, tmp_path, capsys):
    taken = tmp_path / "taken"
    taken.write_text("")
    assert data(url, "review", "1", "--export", str(taken)) == 1
    assert capsys.readouterr().err.strip() == f"mnist: error: {taken}: exists and is not a folder"
    assert data(url, "review", "1", "--export", str(taken / "out")) == 1
    err = capsys.readouterr().err.strip()
    assert err.startswith(f"mnist: error: {taken / 'out'}: cannot write (")
    assert len(err.splitlines()) == 1
