"""The prediction log in the app, in process: /predict answers each prediction's id and the
answer lands in the store's log (written at the latest at shutdown), /healthz counts what was
written and dropped, `prediction_log=False` turns it off, and a store that cannot be written
costs the log, never an answer."""

from __future__ import annotations

import time

import numpy as np

from mnist.datastore import PredictionLog, Store


def _images(*firsts: int) -> list[list[list[float]]]:
    out = []
    for first in firsts:
        pixels = np.zeros((28, 28))
        pixels[5:20, 14] = 200
        pixels[0, 0] = first
        out.append(pixels.tolist())
    return out


def _log(tmp_path) -> PredictionLog:
    return PredictionLog(Store(f"sqlite:///{tmp_path / 'feedback.db'}"))


def test_each_prediction_gets_an_id_and_lands_in_the_log(client, tmp_path):
    api = client(log_images=1.0)
    first = api.post("/predict", json={"pixels": _images(3, 1, 4)}).json()["predictions"]
    second = api.post("/predict", json={"pixels": _images(5)}).json()["predictions"]
    ids = [p["id"] for p in first + second]
    assert all(isinstance(i, int) for i in ids) and len(set(ids)) == 4
    assert ids[3] > max(ids[:3])  # time-ordered
    api.__exit__(None, None, None)  # shutdown writes what is queued
    log = _log(tmp_path)
    window = log.window()
    assert window.ids.tolist() == sorted(ids)
    assert dict(zip(window.ids.tolist(), window.digits.tolist(), strict=True)) == dict(
        zip(ids, [3, 1, 4, 5], strict=True)
    )
    assert set(window.versions.tolist()) == {""}  # a stand-in, not a registered version
    assert window.confidence.tolist() == [1.0] * 4
    kept = log.images(ids)  # log_images=1: every image, as sent
    np.testing.assert_array_equal(kept[ids[1]], np.asarray(_images(1)[0], np.uint8))


def test_healthz_counts_what_the_log_wrote(client):
    api = client()
    for _ in range(3):
        api.post("/predict", json={"pixels": _images(7, 7)})
    deadline = time.monotonic() + 5
    while api.get("/healthz").json()["prediction_log"]["written"] < 6:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    log = api.get("/healthz").json()["prediction_log"]
    assert log == {"on": True, "written": 6, "dropped": 0, "queued": 0, "last_error": None}


def test_with_the_log_off_ids_are_null_and_nothing_is_written(client, tmp_path):
    api = client(prediction_log=False)
    answer = api.post("/predict", json={"pixels": _images(2)}).json()
    assert answer["predictions"][0]["id"] is None
    assert api.get("/healthz").json()["prediction_log"] == {
        "on": False,
        "written": 0,
        "dropped": 0,
        "queued": 0,
        "last_error": None,
    }
    api.__exit__(None, None, None)
    assert not (tmp_path / "feedback.db").exists()


def test_a_store_that_cannot_be_written_costs_the_log_not_the_answers(client, tmp_path):
    (tmp_path / "a-file").write_text("")  # where the store's directory would be
    api = client(datastore=f"sqlite:///{tmp_path / 'a-file' / 'x.db'}")
    started = time.monotonic()
    answers = [api.post("/predict", json={"pixels": _images(d)}) for d in range(10)]
    assert [a.status_code for a in answers] == [200] * 10
    assert [a.json()["predictions"][0]["digit"] for a in answers] == list(range(10))
    assert time.monotonic() - started < 5
    deadline = time.monotonic() + 5
    while api.get("/healthz").json()["prediction_log"]["dropped"] < 10:
        assert time.monotonic() < deadline
        time.sleep(0.05)
    health = api.get("/healthz").json()
    assert health["status"] == "ok"  # the model serves; the log says what it lost
    assert health["prediction_log"]["written"] == 0
    assert health["prediction_log"]["last_error"].startswith("cannot open the prediction log")
