"""POST /feedback against a store that hangs: each write waited for at most a bound, a few in
flight at most, the rest refused at once, and the predictions never held up (nor by a model
registry that hangs). A listening socket that never accepts stands in for a frozen
PostgreSQL: the kernel takes the connection, nobody ever answers."""

from __future__ import annotations

import asyncio
import socket
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import numpy as np
import pytest
from sqlalchemy.exc import OperationalError

from app.serve import FeedbackDesk
from app.serve.errors import RequestError
from app.serve.holder import ModelHolder
from mnist.datastore import engines
from tests.unit.app.serve.conftest import INFO


def _sample(label: int = 7) -> dict:
    pixels = np.zeros((28, 28))
    pixels[5:20, 14] = 200
    return {"pixels": pixels.tolist(), "label": label}


@pytest.fixture
def frozen() -> Iterator[tuple[str, socket.socket]]:
    """A PostgreSQL that takes TCP connections and never answers, as a frozen one does: its
    URL, and its listening socket (closed, it refuses them all, as a killed one does)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield f"postgresql://u@127.0.0.1:{listener.getsockname()[1]}/frozen", listener


def _writes(desk: FeedbackDesk, n: int) -> list[tuple[float, int, str]]:
    """`n` writes at once: each one's seconds, status and message."""

    async def one() -> tuple[float, int, str]:
        started = time.monotonic()
        try:
            await desk.write(np.full((28, 28), 9.0), 3, trusted=False)
            return time.monotonic() - started, 201, ""
        except RequestError as exc:
            return time.monotonic() - started, exc.status, str(exc)

    async def all_() -> list[tuple[float, int, str]]:
        return list(await asyncio.gather(*(one() for _ in range(n))))

    return asyncio.run(all_())


def test_a_frozen_store_costs_a_503_within_the_bound_and_a_few_writes_at_most(frozen):
    url, listener = frozen
    desk = FeedbackDesk(url, 30, seconds=0.5, max_writes=2, max_waiting=1)
    answers = sorted(_writes(desk, 5))
    waiting = [a for a in answers if "writes still waiting" in a[2]]
    refused_at_once = [a for a in waiting if a[0] < 0.2]
    waited = [a for a in waiting if a[0] >= 0.5]
    timed_out = [a for a in answers if "did not answer within 0.5 s" in a[2]]
    assert (len(refused_at_once), len(waited), len(timed_out)) == (2, 1, 2), answers
    assert all(a[1] == 503 for a in answers)
    assert all(0.5 <= a[0] < 1.5 for a in timed_out + waited), answers
    assert "busy or away" in refused_at_once[0][2]
    assert desk.writes == 2  # still waiting for the store, past their requests
    listener.close()  # the store answers (here: refuses): the slots come back
    deadline = time.monotonic() + 5
    while desk.writes and time.monotonic() < deadline:
        time.sleep(0.02)
    assert desk.writes == 0
    assert _writes(desk, 1)[0][2] == (
        "cannot store the sample now: the added-data store is unavailable"
    )


def test_a_new_connection_to_a_frozen_postgresql_gives_up_after_the_connect_timeout(
    frozen, monkeypatch
):
    monkeypatch.setattr(engines, "CONNECT_SECONDS", 2)  # libpq's least
    url, _ = frozen
    started = time.monotonic()
    with pytest.raises(OperationalError, match="timeout"):
        engines.engine(url, write=True).connect()
    assert time.monotonic() - started < 3


def test_hanging_feedback_never_holds_up_predictions(client, monkeypatch):
    """More hanging writes than Starlette's thread pool has threads (40): with the store
    calls in that pool, /predict (which decodes JSON there) would wait behind them."""
    monkeypatch.setattr("app.serve.feedback.STORE_SECONDS", 0.5)
    frozen, stored = threading.Event(), FeedbackDesk.store
    calls: list[int] = []

    def hangs(self, *args, **kwargs):
        calls.append(1)
        frozen.wait(30)
        return stored(self, *args, **kwargs)

    monkeypatch.setattr(FeedbackDesk, "store", hangs)
    api = client(feedback_per_minute=1000)
    try:
        with ThreadPoolExecutor(48) as pool:
            feedback = [pool.submit(api.post, "/feedback", json=_sample()) for _ in range(44)]
            time.sleep(0.2)
            started = time.monotonic()
            predicted = pool.submit(api.post, "/predict", json={"pixels": [[3] * 784]})
            answer = predicted.result(timeout=10)
            took = time.monotonic() - started
            answers = [f.result(timeout=10) for f in feedback]
        assert answer.status_code == 200 and answer.json()["predictions"][0]["digit"] == 3
        assert took < 2, took
        assert {a.status_code for a in answers} == {503}
        assert len(calls) == 4  # MAX_WRITES reached the store; the others were refused
    finally:
        frozen.set()
    deadline = time.monotonic() + 5
    after = api.post("/feedback", json=_sample())
    while after.status_code == 503 and time.monotonic() < deadline:  # the 4 finish first
        time.sleep(0.05)
        after = api.post("/feedback", json=_sample())
    assert after.status_code == 201, after.text  # thawed: stored again


def test_a_registry_that_hangs_holds_no_prediction_up(client, monkeypatch):
    """The poller looks the model up off the request path: while MLflow hangs, /predict
    answers with the model already loaded."""
    hanging, looked_up = threading.Event(), threading.Event()

    def resolve(self):
        looked_up.set()
        hanging.wait(30)
        return INFO

    monkeypatch.setattr(ModelHolder, "_resolve", resolve)
    api = client(poll_seconds=0.05)
    try:
        assert looked_up.wait(5)  # the poller is stuck in the lookup
        started = time.monotonic()
        answers = [api.post("/predict", json={"pixels": [[d] * 784]}) for d in range(10)]
        took = time.monotonic() - started
        assert [a.json()["predictions"][0]["digit"] for a in answers] == list(range(10))
        assert took < 2, took
    finally:
        hanging.set()


def test_a_burst_on_a_sound_store_waits_its_turn_and_is_stored(tmp_path):
    desk = FeedbackDesk(f"sqlite:///{tmp_path / 'feedback.db'}", 100, seconds=10, max_writes=2)
    answers = _writes(desk, 16)
    assert [a[1] for a in answers] == [201] * 16, answers
    assert desk.writes == 0
