"""POST /feedback in process: other sites refused, valid samples stored before the 201, a
per-client limit that only valid samples count against, a store that is down costs a 503."""

from __future__ import annotations

import numpy as np
import pytest

from app.serve import FeedbackDesk
from app.serve.errors import RequestError
from mnist.datastore import Store


def _sample(label: int = 7) -> dict:
    pixels = np.zeros((28, 28))
    pixels[5:20, 14] = 200
    return {"pixels": pixels.tolist(), "label": label}


def test_a_valid_sample_is_stored_before_the_answer(client, tmp_path):
    api = client()
    response = api.post("/feedback", json=_sample(4))
    assert response.status_code == 201, response.text
    assert response.json()["label"] == 4
    assert Store(f"sqlite:///{tmp_path / 'feedback.db'}").count() == 1


def test_another_sites_page_is_refused(client):
    api = client()
    other = api.post("/feedback", json=_sample(), headers={"Origin": "https://evil.example"})
    assert other.status_code == 403
    assert other.json() == {"error": "cross-site request from https://evil.example refused"}
    same = api.post("/feedback", json=_sample(), headers={"Origin": "http://testserver"})
    assert same.status_code == 201, same.text


def test_only_valid_samples_count_against_a_clients_minute(client):
    api = client(feedback_per_minute=3)
    refused = [api.post("/feedback", json=_sample(12)).status_code for _ in range(5)]
    assert refused == [422] * 5
    statuses = [api.post("/feedback", json=_sample()).status_code for _ in range(4)]
    assert statuses == [201, 201, 201, 429]
    assert api.post("/feedback", json=_sample()).json() == {
        "error": "more than 3 samples a minute from one client: try again later"
    }


def test_the_limit_is_per_client_and_per_moving_minute(monkeypatch):
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr("limits.storage.memory.time.time", lambda: clock["now"])
    desk = FeedbackDesk(None, per_minute=2)
    desk.admit("a")
    clock["now"] += 30
    desk.admit("a")
    with pytest.raises(RequestError, match="more than 2 samples") as refused:
        desk.admit("a")
    assert refused.value.status == 429
    desk.admit("b")  # another client has its own minute
    clock["now"] += 31  # the first sample is a minute old: one place free, not two
    desk.admit("a")
    with pytest.raises(RequestError):
        desk.admit("a")


def test_idle_clients_are_forgotten_past_the_bound(monkeypatch):
    clock = {"now": 1_000_000.0}
    monkeypatch.setattr("limits.storage.memory.time.time", lambda: clock["now"])
    monkeypatch.setattr("app.serve.feedback.MAX_CLIENTS", 50)
    desk = FeedbackDesk(None, per_minute=1)
    for n in range(60):
        desk.admit(f"10.0.0.{n}")
    desk.admit("10.0.1.1")  # all 61 are within the minute: nobody is forgotten yet
    with pytest.raises(RequestError):
        desk.admit("10.0.0.0")
    clock["now"] += 61
    desk._hits.events.update({k: [] for k in desk._hits.events})  # the storage's expiry pass
    desk.admit("10.0.2.1")  # over the bound: the idle addresses are dropped
    assert len(desk._hits.events) == 1
    desk.admit("10.0.0.0")  # a forgotten client starts a fresh minute


def test_a_store_that_cannot_open_costs_a_503(tmp_path):
    (tmp_path / "a-file").write_text("")  # where the store's directory would be
    desk = FeedbackDesk(f"sqlite:///{tmp_path / 'a-file' / 'x.db'}", 30)
    with pytest.raises(RequestError, match="added-data store is unavailable") as down:
        desk.store(np.zeros((28, 28)), 3)
    assert down.value.status == 503
