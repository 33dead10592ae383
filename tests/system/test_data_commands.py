"""`mnist data add/list/remove` as commands: every kind of input, what is rejected and why,
one-line refusals, the store named by the environment; on SQLite and on PostgreSQL."""

import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from mnist.datastore import Store

BIN = Path(sys.executable).parent


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request, tmp_path) -> str:
    """A fresh store: a SQLite file, or a database on a real PostgreSQL server."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'data.db'}"
    postgres = request.getfixturevalue("postgres")
    return postgres.url(f"t{abs(hash(request.node.nodeid))}")


def _png(path: Path, pixels: np.ndarray, scale: int = 1) -> Path:
    img = Image.fromarray(pixels.astype(np.uint8))
    img.resize((28 * scale, 28 * scale)).save(path)
    return path


@pytest.fixture
def inputs(tmp_path, mnist_data) -> Path:
    """Every accepted kind of input, with some bad samples among them."""
    images, labels = mnist_data.train.images[:40], mnist_data.train.labels[:40]
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


def test_environment_names_the_store(tmp_path, url):
    env = {**os.environ, "MNIST_DATASTORE": url}
    proc = subprocess.run(
        [str(BIN / "mnist"), "data", "list"], capture_output=True, text=True, timeout=300, env=env
    )
    assert proc.stdout.strip() == f"{url}: no batches"


def test_the_labelling_queue_round_trip(url, tmp_path, mnist_data):
    """Predictions logged, exported by `mnist data queue`, two sorted by hand into digit
    folders, added back with `--source queue`: linked to their predictions, gone from the
    queue; the rest stay queued."""
    from datetime import UTC, datetime

    from mnist.datastore import Logged, PredictionLog, new_ids

    images, labels = mnist_data.test.images[:4], mnist_data.test.labels[:4]
    ids = new_ids(4, datetime.now(UTC))
    rows = [
        Logged(i, datetime.now(UTC), "1", 0, c, 1, 0.1, x.astype(np.uint8).tobytes(), True)
        for i, x, c in zip(ids, images, [0.3, 0.4, 0.5, 0.6], strict=True)
    ]
    PredictionLog(Store(url)).write(rows)
    dest = tmp_path / "round"
    exported = _mnist("queue", "--export", str(dest), url=url)
    assert exported.returncode == 0, exported.stderr
    assert f"mnist data add {dest} --source queue" in exported.stdout
    for i in (0, 2):
        (dest / "unlabelled" / f"{ids[i]}.png").rename(dest / str(labels[i]) / f"{ids[i]}.png")
    added = _mnist("add", str(dest), "--source", "queue", url=url)
    assert added.returncode == 0, added.stderr
    assert "added batch 1 (queue): 2 samples" in added.stdout
    assert "2 linked to the predictions their files name; 2 left in unlabelled/" in added.stdout
    window = PredictionLog(Store(url)).window()
    assert dict(zip(window.labelled_ids.tolist(), window.labels.tolist(), strict=True)) == {
        ids[i]: labels[i] for i in (0, 2)
    }
    queued = _mnist("queue", url=url)
    assert queued.returncode == 0, queued.stderr
    listed = [int(line.split()[0]) for line in queued.stdout.splitlines()[1:-1]]
    assert listed == [ids[1], ids[3]]
