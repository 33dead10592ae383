"""`app.events`: Prefect events posted by HTTP to a receiver on 127.0.0.1, checked against
Prefect's own event schema; LabelEvents' coalescing. Labels counted against a real champion,
and a real Prefect server's trigger: tests/integration/test_triggers.py."""

from __future__ import annotations

import base64
import itertools
import socket
import time
from collections.abc import Iterator

import pytest

from app import events
from mnist.datastore import Store
from tests.servers import Webhook


@pytest.fixture
def receiver(monkeypatch) -> Iterator[Webhook]:
    """What a Prefect API at its URL + /api would have been sent to /events."""
    found = Webhook()
    monkeypatch.setenv("PREFECT_API_URL", f"{found.url}/api")
    monkeypatch.delenv("PREFECT_API_AUTH_STRING", raising=False)
    monkeypatch.delenv("PREFECT_API_KEY", raising=False)
    yield found
    found.close()


def test_no_api_url_no_post(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)
    assert events.emit("mnist.x", {"prefect.resource.id": "mnist.x"}, {}) is False


def test_emit_posts_an_event_prefect_accepts(receiver, monkeypatch):
    from prefect.events import Event

    monkeypatch.setenv("PREFECT_API_AUTH_STRING", "admin:s3cret")
    resource = {"prefect.resource.id": "mnist.data.m", "mnist.retrain.due": "true"}
    assert events.emit("mnist.data.added", resource, {"added": 3, "source": "feedback"})
    [(_, path, batch)], [headers] = receiver.posts, receiver.headers
    assert path == "/api/events"
    assert headers["Authorization"] == "Basic " + base64.b64encode(b"admin:s3cret").decode()
    [event] = [Event.model_validate(e) for e in batch]  # Prefect's own schema
    assert event.event == "mnist.data.added" and event.payload == {"added": 3, "source": "feedback"}
    assert event.resource.id == "mnist.data.m" and event.resource["mnist.retrain.due"] == "true"
    assert abs(time.time() - event.occurred.timestamp()) < 5


def test_emit_sends_the_api_key_as_a_bearer(receiver, monkeypatch):
    monkeypatch.setenv("PREFECT_API_KEY", "pnu_key")
    assert events.emit("mnist.x", {"prefect.resource.id": "mnist.x"}, {})
    assert receiver.headers[0]["Authorization"] == "Bearer pnu_key"


def test_a_silent_server_costs_the_timeout_and_one_line(monkeypatch, caplog):
    with socket.socket() as silent:  # accepts connections, never answers
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{silent.getsockname()[1]}/api")
        started = time.monotonic()
        assert events.emit("mnist.x", {"prefect.resource.id": "mnist.x"}, {}, timeout=0.5) is False
        assert time.monotonic() - started < 2
    [line] = [r.getMessage() for r in caplog.records if r.name == "app.events"]
    assert "event mnist.x not sent" in line and "\n" not in line


def test_a_server_that_is_gone_is_one_line(monkeypatch, caplog):
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    monkeypatch.setenv("PREFECT_API_URL", f"http://127.0.0.1:{port}/api")
    assert events.emit("mnist.x", {"prefect.resource.id": "mnist.x"}, {}) is False
    assert "refused" in caplog.text.lower()


def test_labels_arrived_without_api_url_reads_nothing(monkeypatch):
    monkeypatch.delenv("PREFECT_API_URL", raising=False)

    class Unread:  # neither the store nor the registry is touched
        def new_labels(self, since):
            raise AssertionError("read")

    assert events.labels_arrived(Unread(), 1, "add") is False  # pyright: ignore[reportArgumentType]


def test_labels_arrived_with_a_bad_setting_is_one_line(receiver, monkeypatch, caplog, tmp_path):
    monkeypatch.setenv("MNIST_RETRAIN_MIN_LABELS", "0")
    assert events.labels_arrived(Store(f"sqlite:///{tmp_path / 'd.db'}"), 1, "add") is False
    assert receiver.posts == [] and "min_labels" in caplog.text


@pytest.fixture
def arrivals(monkeypatch) -> list[tuple[float, int, str]]:
    """Each labels_arrived call LabelEvents makes: when, how many, from where (the call itself,
    with the registry and the Prefect server: tests/integration/test_triggers.py)."""
    calls: list[tuple[float, int, str]] = []

    def arrived(store: Store, added: int, source: str) -> bool:
        calls.append((time.monotonic(), added, source))
        return True

    monkeypatch.setattr(events, "labels_arrived", arrived)
    return calls


def test_label_events_coalesce_a_flood_into_one_event_per_interval(arrivals, tmp_path):
    notes = events.LabelEvents(f"sqlite:///{tmp_path / 'data.db'}", interval=0.4)
    started, noted, slowest = time.monotonic(), 0, 0.0
    while time.monotonic() - started < 1.5:  # a flood of feedback for 1.5 s
        before = time.perf_counter()
        notes.note(1, "feedback")
        slowest = max(slowest, time.perf_counter() - before)
        noted += 1
        time.sleep(0.001)
    assert slowest < 0.05  # note() does no I/O on the caller's thread
    deadline = time.monotonic() + 10
    while sum(added for _, added, _ in arrivals) < noted:
        assert time.monotonic() < deadline, arrivals
        time.sleep(0.02)
    times = [when for when, _, _ in arrivals]
    assert 2 <= len(times) <= 5, times  # ~1.5 s / 0.4 s, not one per note
    assert all(b - a >= 0.35 for a, b in itertools.pairwise(times)), times
    assert {source for _, _, source in arrivals} == {"feedback"}
    notes.close()


def test_label_events_close_within_a_second_when_the_server_hangs(monkeypatch, tmp_path):
    monkeypatch.setattr(events, "labels_arrived", lambda *_: time.sleep(5))
    notes = events.LabelEvents(f"sqlite:///{tmp_path / 'data.db'}", interval=0.1)
    notes.note(1, "feedback")
    time.sleep(0.2)  # the thread is inside the hanging call
    started = time.monotonic()
    notes.close()
    assert time.monotonic() - started < 1.1


def test_label_events_send_what_was_noted_before_closing(arrivals, tmp_path):
    notes = events.LabelEvents(f"sqlite:///{tmp_path / 'data.db'}", interval=30)
    notes.note(2, "feedback")
    deadline = time.monotonic() + 5
    while not arrivals:
        assert time.monotonic() < deadline
        time.sleep(0.01)
    notes.note(3, "feedback")  # within the interval: held back until it ends, or until closing
    notes.close()
    assert [added for _, added, _ in arrivals] == [2, 3]
