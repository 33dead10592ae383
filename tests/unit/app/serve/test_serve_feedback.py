"""POST /feedback in process: other sites refused, valid samples stored before the 201, a
per-client limit that only valid samples count against, a store that is down costs a 503;
trusted with the feedback token, pending without, 401 with a wrong one; tied to the
prediction it names."""

from __future__ import annotations

import numpy as np
import pytest
from sqlalchemy import select

from app.serve import FeedbackDesk
from app.serve.errors import RequestError
from mnist.datastore import PredictionLog, Sample, Store


def _sample(label: int = 7, **more) -> dict:
    pixels = np.zeros((28, 28))
    pixels[5:20, 14] = 200
    return {"pixels": pixels.tolist(), "label": label, **more}


def _store(tmp_path) -> Store:
    return Store(f"sqlite:///{tmp_path / 'feedback.db'}")


def _prediction_ids(store: Store) -> list[int | None]:
    with store.reader.connect() as connection:
        return list(connection.scalars(select(Sample.prediction_id).order_by(Sample.id)))


def test_a_valid_sample_is_stored_before_the_answer(client, tmp_path):
    api = client()
    response = api.post("/feedback", json=_sample(4))
    assert response.status_code == 201, response.text
    assert response.json()["label"] == 4
    assert Store(f"sqlite:///{tmp_path / 'feedback.db'}").count() == 1
    assert response.json()["review"] == "pending"  # no token: a stranger's claim


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


def test_trusted_feedback_is_not_held_to_a_strangers_limit(client):
    api = client(feedback_per_minute=2, feedback_token="s3cret-feedback-token")
    trusted = {"Authorization": "Bearer s3cret-feedback-token"}
    statuses = [
        api.post("/feedback", json=_sample(), headers=trusted).status_code for _ in range(5)
    ]
    assert statuses == [201] * 5
    anonymous = [api.post("/feedback", json=_sample()).status_code for _ in range(3)]
    assert anonymous == [201, 201, 429]


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
        desk.store(np.zeros((28, 28)), 3, trusted=False)
    assert down.value.status == 503


TOKEN = {"Authorization": "Bearer s3cret-feedback-token"}


def test_feedback_with_the_token_is_trusted_and_without_it_pending(client, tmp_path):
    api = client(feedback_token="s3cret-feedback-token")
    trusted = api.post("/feedback", json=_sample(3), headers=TOKEN)
    anonymous = api.post("/feedback", json=_sample(3))
    assert trusted.status_code == anonymous.status_code == 201, (trusted.text, anonymous.text)
    assert trusted.json()["review"] == "trusted" and anonymous.json()["review"] == "pending"
    store = _store(tmp_path)
    assert store.batch(trusted.json()["batch"]).review == "trusted"
    assert store.batch(anonymous.json()["batch"]).review == "pending"
    assert trusted.json()["batch"] != anonymous.json()["batch"]


@pytest.mark.parametrize(
    ("configured", "authorization", "message"),
    [
        ("s3cret-feedback-token", "Bearer wrong", "wrong feedback token"),
        ("s3cret-feedback-token", "Bearer", "wrong feedback token"),
        ("s3cret-feedback-token", "Basic s3cret-feedback-token", "wrong feedback token"),
        ("s3cret-feedback-token", "Bearer s3cret-feedback2", "wrong feedback token"),
        (None, "Bearer anything", "this server has no feedback token"),
    ],
)
def test_a_wrong_token_is_refused_not_taken_as_pending(
    client, tmp_path, configured, authorization, message
):
    api = client(feedback_token=configured) if configured else client()
    response = api.post("/feedback", json=_sample(), headers={"Authorization": authorization})
    assert response.status_code == 401, response.text
    assert message in response.json()["error"]
    assert _store(tmp_path).count() == 0


def test_feedback_is_tied_to_the_prediction_it_names(client, tmp_path):
    api = client(feedback_token="s3cret-feedback-token")
    pixels = _sample()["pixels"]
    (answer,) = api.post("/predict", json={"pixels": [pixels]}).json()["predictions"]
    assert answer["digit"] == 0
    stored = api.post("/feedback", json=_sample(7, prediction=answer["id"]), headers=TOKEN)
    assert stored.status_code == 201, stored.text
    assert stored.json()["prediction"] == answer["id"]
    form = api.post(
        "/feedback",
        data={"label": "7", "prediction": str(answer["id"])},
        files={"file": ("d.png", _png(pixels), "image/png")},
    )
    assert form.status_code == 201, form.text
    unseen = api.post("/feedback", json=_sample(7, prediction=12345))  # not in the log: fine
    assert unseen.status_code == 201, unseen.text
    api.__exit__(None, None, None)  # the log is written at shutdown at the latest
    store = _store(tmp_path)
    assert _prediction_ids(store) == [answer["id"], answer["id"], 12345]
    window = PredictionLog(store).window()
    assert window.labelled_ids.tolist() == [answer["id"]]  # the trusted labels only
    assert window.live_accuracy == 0.0  # the model said 0, the person 7


@pytest.mark.parametrize(
    ("given", "shown"),
    [("12", "'12'"), (-1, "-1"), (0, "0"), (2**63, str(2**63)), (1.5, "1.5"), (True, "true")],
)
def test_a_prediction_id_must_be_a_positive_64_bit_integer(client, tmp_path, given, shown):
    response = client().post("/feedback", json=_sample(prediction=given))
    assert response.status_code == 422
    assert response.json()["error"] == (
        f"prediction must be a prediction id (a positive integer), got {shown}"
    )
    assert _store(tmp_path).count() == 0


def test_a_multipart_prediction_id_is_checked_too(client):
    response = client().post(
        "/feedback",
        data={"label": "7", "prediction": "12a"},
        files={"file": ("d.png", _png(_sample()["pixels"]), "image/png")},
    )
    assert response.status_code == 422
    assert "prediction must be a prediction id" in response.json()["error"]


def test_trusted_feedback_tells_the_label_events_and_they_close_at_shutdown(client, monkeypatch):
    notes: list[tuple[int, str]] = []
    closed: list[bool] = []

    class Recorder:  # app.events.LabelEvents' interface; its HTTP side is app.events' tests
        def __init__(self, store_url, interval):
            pass

        def note(self, added: int, source: str) -> None:
            notes.append((added, source))

        def close(self) -> None:
            closed.append(True)

    monkeypatch.setattr("app.serve.app.LabelEvents", Recorder)
    api = client(feedback_token="s3cret-feedback-token")
    api.post("/feedback", json=_sample())  # pending: no event
    api.post("/feedback", json=_sample(), headers=TOKEN)
    assert notes == [(1, "feedback")]
    api.__exit__(None, None, None)
    assert closed == [True]


def _png(pixels) -> bytes:
    import io

    from PIL import Image

    out = io.BytesIO()
    Image.fromarray(np.asarray(pixels).astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_guessing_the_token_uses_up_the_clients_minute(client):
    api = client(feedback_per_minute=3, feedback_token="s3cret-feedback-token")
    guesses = [
        api.post("/feedback", json=_sample(), headers={"Authorization": f"Bearer guess-{n}"})
        for n in range(5)
    ]
    assert [g.status_code for g in guesses] == [401, 401, 401, 429, 429]


def test_a_short_feedback_token_is_refused_at_start():
    from pydantic import ValidationError

    from mnist.settings import ServeSettings

    with pytest.raises(ValidationError, match="at least 16"):
        ServeSettings(feedback_token="short")  # pyright: ignore[reportArgumentType]
