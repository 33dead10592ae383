"""The labelling queue (`mnist data queue`, `mnist data add DIR --source queue`) on a SQLite
store with a prediction log: the least confident first, drifted windows before them, exported
by prediction id, sorted by a person, added back linked to their predictions, then gone from
the queue; `mnist data add` and `accept` tell the retrain trigger (an HTTP receiver here)."""

import shutil
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from app.cli import main
from mnist.datastore import Logged, PredictionLog, Sample, Store, new_ids
from tests.servers import Webhook


@pytest.fixture
def url(tmp_path, monkeypatch) -> str:
    """A fresh store in a SQLite file; no Prefect API to send events to."""
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    return f"sqlite:///{tmp_path / 'store' / 'data.db'}"


def log(url: str, images: np.ndarray, confidence: list[float], at: datetime | None = None):
    """Log one prediction per image (its image kept), answered with digit 1; their ids."""
    at = at or datetime.now(UTC)
    ids = new_ids(len(images), at)
    rows = [
        Logged(i, at, "3", 1, c, 7, 1 - c, image.astype(np.uint8).tobytes(), True)
        for i, image, c in zip(ids, images, confidence, strict=True)
    ]
    PredictionLog(Store(url)).write(rows)
    return ids


def data(url: str, *args: str) -> int:
    return main(["data", *args, "--datastore", url])


def test_an_empty_queue_is_one_line(url, capsys, mnist_data):
    assert data(url, "queue") == 0
    out = capsys.readouterr().out.strip()
    assert out.endswith(
        "no predictions logged yet (mnist serve logs what it answers, unless --no-prediction-log)"
    )
    log(url, mnist_data.test.images[:2], [0.5, 0.6], datetime.now(UTC) - timedelta(days=3))
    assert data(url, "queue", "--since", "24h") == 0
    out = capsys.readouterr().out.strip().splitlines()
    assert len(out) == 1 and out[0].startswith("nothing to label since ")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "week"], "argument --since: expected a duration such as 30m, 24h or 7d"),
        (["--limit", "0"], "argument --limit: expected a whole number of at least 1, got '0'"),
    ],
)
def test_bad_options_are_one_line(url, capsys, args, message):
    with pytest.raises(SystemExit) as exit_:
        data(url, "queue", *args)
    assert exit_.value.code == 2 and message in capsys.readouterr().err


def test_the_queue_lists_drifted_windows_first_then_the_least_confident(url, capsys, mnist_data):
    images = mnist_data.test.images
    old = datetime.now(UTC) - timedelta(hours=5)
    drifted = log(url, images[:2], [0.9, 0.95], old)
    recent = log(url, images[2:6], [0.8, 0.4, 0.6, 0.99])
    PredictionLog(Store(url)).record(
        old - timedelta(minutes=1), old + timedelta(minutes=1), "drift", True, 2, None, None
    )
    assert data(url, "queue", "--limit", "4") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split() == ["id", "time", "version", "digit", "confidence", "drifted"]
    listed = [int(line.split()[0]) for line in lines[1:-1]]
    assert listed == [drifted[0], drifted[1], recent[1], recent[2]]
    assert lines[1].split()[-2:] == ["0.900", "yes"] and lines[3].split()[-2:] == ["0.400", "no"]
    assert (
        lines[-1] == "4 shown, 2 from drifted windows; to label them: mnist data queue --export DIR"
    )
    assert data(url, "queue", "--since", "1h") == 0
    listed = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert listed == [recent[1], recent[2], recent[0], recent[3]]


def test_the_round_trip_links_each_label_to_its_prediction(url, tmp_path, capsys, mnist_data):
    images, labels = mnist_data.test.images[:5], mnist_data.test.labels[:5]
    ids = log(url, images, [0.3, 0.4, 0.5, 0.6, 0.7])
    dest = tmp_path / "queue"
    assert data(url, "queue", "--export", str(dest)) == 0
    out = capsys.readouterr().out.splitlines()
    assert (
        out[0]
        == f"wrote 5 images to {dest}/unlabelled/ (named by prediction id, least confident first)"
    )
    assert out[1].endswith(f"then: mnist data add {dest} --source queue")
    assert sorted(p.name for p in dest.iterdir()) == [*map(str, range(10)), "unlabelled"]
    assert sorted(p.name for p in (dest / "unlabelled").iterdir()) == sorted(
        f"{i}.png" for i in ids
    )
    assert data(url, "queue", "--export", str(dest)) == 1  # never over the files of a round
    assert "unlabelled/" in capsys.readouterr().err

    for i in (0, 2, 3):  # a person sorts three; two stay unlabelled
        shutil.move(dest / "unlabelled" / f"{ids[i]}.png", dest / str(labels[i]) / f"{ids[i]}.png")
    extra = dest / str(labels[4]) / "scan.png"  # a file of the person's own: added, unlinked
    shutil.copy(dest / "unlabelled" / f"{ids[4]}.png", extra)
    assert data(url, "add", str(dest), "--source", "queue") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[0].startswith("added batch 1 (queue): 4 samples")
    assert out[2] == (
        "3 linked to the predictions their files name; 1 not named <prediction id>.png: added "
        "unlinked; 2 left in unlabelled/: not added"
    )
    store = Store(url)
    with store._session() as session:
        linked = {s.prediction_id: s.label for s in session.query(Sample)}
    assert linked == {**{ids[i]: int(labels[i]) for i in (0, 2, 3)}, None: int(labels[4])}
    images_back, _, _ = store.samples(1)
    assert {bytes(x) for x in images_back} >= {
        images[i].astype(np.uint8).tobytes() for i in (0, 2, 3)
    }

    assert data(url, "queue") == 0  # the labelled ones have left the queue
    listed = [int(line.split()[0]) for line in capsys.readouterr().out.splitlines()[1:-1]]
    assert listed == [ids[1], ids[4]]
    window = PredictionLog(store).window()
    assert sorted(window.labelled_ids.tolist()) == sorted(ids[i] for i in (0, 2, 3))


def test_a_queue_with_nothing_sorted_adds_nothing(url, tmp_path, capsys, mnist_data):
    log(url, mnist_data.test.images[:3], [0.3, 0.4, 0.5])
    dest = tmp_path / "queue"
    assert data(url, "queue", "--export", str(dest)) == 0
    capsys.readouterr()
    assert data(url, "add", str(dest), "--source", "queue") == 1
    err = capsys.readouterr().err.strip()
    assert err == (
        f"mnist: error: no samples found in {dest} (3 image(s) still in unlabelled/: sort them "
        "first)"
    )
    assert Store(url).count() == 0


def test_ids_that_name_no_logged_prediction_are_added_unlinked(url, tmp_path, capsys, mnist_data):
    dest = tmp_path / "queue" / "4"
    dest.mkdir(parents=True)
    from PIL import Image

    Image.fromarray(mnist_data.test.images[0].astype(np.uint8)).save(dest / "123456789.png")
    assert data(url, "add", str(dest.parent), "--source", "queue") == 0
    out = capsys.readouterr().out.splitlines()
    assert out[2] == (
        "0 linked to the predictions their files name; 1 naming no prediction logged in "
        f"{Store(url)}: added unlinked"
    )


def test_add_and_accept_tell_the_retrain_trigger(url, tmp_path, monkeypatch, capsys, mnist_data):
    hook = Webhook()  # a stand-in Prefect API that keeps the events posted to it
    monkeypatch.setenv("PREFECT_API_URL", f"{hook.url}/api")
    # a registry that fails at once: the event still goes, saying so (a fresh SQLite one: 3 s)
    monkeypatch.setenv("MLFLOW_TRACKING_URI", (tmp_path / "mlruns").as_uri())
    try:
        np.savez(tmp_path / "few.npz", x=mnist_data.test.images[:3], y=mnist_data.test.labels[:3])
        assert data(url, "add", str(tmp_path / "few.npz")) == 0
        store = Store(url)
        for batch in (2, 3):  # anonymous feedback: rejected (no news), then accepted
            for i in range(3, 5):
                store.feedback(mnist_data.test.images[i], int(mnist_data.test.labels[i]))
            assert data(url, "reject" if batch == 2 else "accept", str(batch)) == 0
    finally:
        hook.close()
    events = [e for _, _, batch in hook.posts for e in batch]
    got = [(e["event"], e["payload"]["added"], e["payload"]["source"]) for e in events]
    assert got == [("mnist.data.added", 3, "few"), ("mnist.data.added", 2, "feedback-anonymous")]
    assert all(e["resource"]["mnist.retrain.due"] == "false" for e in events)
