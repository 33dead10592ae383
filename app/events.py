"""Prefect events from places that do not run Prefect: `mnist data` and `mnist serve`.

`emit` posts one event in Prefect's schema to `$PREFECT_API_URL/events` (a self-hosted server
or Prefect Cloud), within a short timeout, and never raises: an event is a hint, and a command
or a request must not fail for it. Without `PREFECT_API_URL` it does nothing. It needs no
Prefect import (`app.serve` may not import Prefect), only the standard library.

`labels_arrived` tells the retrain trigger (`prefect.yaml`) that trusted labels arrived: the
event `mnist.data.added`, its resource labelled `mnist.retrain.due` = "true" once at least
`MNIST_RETRAIN_MIN_LABELS` of them arrived since the champion was made. `LabelEvents` does the
same for the HTTP service, off the request path and coalesced.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import threading
import urllib.error
import urllib.request
import uuid
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from mnist.errors import first_line
from mnist.event_names import DATA_ADDED, RETRAIN_DUE

if TYPE_CHECKING:
    from mnist.datastore import Store

log = logging.getLogger(__name__)

TIMEOUT = 3.0
"""Seconds one post may take (connect and answer)."""


def api_url() -> str | None:
    """The Prefect API events go to: the variable `PREFECT_API_URL` (a Prefect profile's
    setting is not read: that would need Prefect), or None."""
    return os.environ.get("PREFECT_API_URL", "").strip().rstrip("/") or None


def _headers() -> dict[str, str]:
    headers = {"Content-Type": "application/json"}
    if auth := os.environ.get("PREFECT_API_AUTH_STRING"):  # a self-hosted server's basic auth
        token = base64.b64encode(auth.encode()).decode()
        headers["Authorization"] = f"Basic {token}"
    elif key := os.environ.get("PREFECT_API_KEY"):  # Prefect Cloud
        headers["Authorization"] = f"Bearer {key}"
    return headers


def event(name: str, resource: Mapping[str, str], payload: Mapping[str, Any]) -> dict[str, Any]:
    """One event as Prefect's API takes it (`prefect.events.Event`'s JSON)."""
    return {
        "id": str(uuid.uuid4()),
        "occurred": datetime.now(UTC).isoformat(),
        "event": name,
        "resource": dict(resource),
        "related": [],
        "payload": dict(payload),
    }


def emit(
    event_name: str,
    resource: Mapping[str, str],
    payload: Mapping[str, Any],
    timeout: float = TIMEOUT,
) -> bool:
    """Post one event to the Prefect API; True when the server took it. False without
    `PREFECT_API_URL`, and (with one logged line) when the server is slow, down or refuses."""
    url = api_url()
    if url is None:
        return False
    body = json.dumps([event(event_name, resource, payload)], default=str).encode()
    request = urllib.request.Request(f"{url}/events", data=body, headers=_headers(), method="POST")
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:
            answer.read()
        return True
    except urllib.error.HTTPError as exc:
        log.warning("event %s not sent: %s answered %s %s", event_name, url, exc.code, exc.reason)
    except (OSError, ValueError) as exc:  # refused, unreachable, timed out, a bad URL
        reason = getattr(exc, "reason", None) or exc
        log.warning("event %s not sent to %s: %s", event_name, url, reason)
    return False


def _champion_made(model: str) -> datetime | None:
    """When the run that made the champion of `model` started (it read the added data then:
    what arrived after is new to it, even while it trained); None when there is none (all
    labels are new then). Raises MnistError when the registry cannot be read."""
    from mnist import registry, tracking  # MLflow: only when an event is actually sent

    champion = registry.champion(model)
    if champion is None:
        return None
    run = tracking.call(tracking.client().get_run, champion.run_id)
    return datetime.fromtimestamp(run.info.start_time / 1000, UTC)


def labels_arrived(store: Store, added: int, source: str) -> bool:
    """Emit `mnist.data.added` for `added` new trusted samples from `source`, with how many
    trusted labels arrived since the champion was made; its resource is labelled
    `mnist.retrain.due` "true" when they reach `MNIST_RETRAIN_MIN_LABELS`. False when not sent
    (no `PREFECT_API_URL`, or the server did not take it); never raises."""
    if api_url() is None:
        return False
    from pydantic import ValidationError

    from mnist.settings import LabelSettings, RegistrySettings

    try:
        model = RegistrySettings().registered_model
        minimum = LabelSettings().min_labels
    except ValidationError as exc:  # a bad MNIST_ variable: say which, stay quiet otherwise
        error = exc.errors()[0]
        where = ".".join(map(str, error["loc"]))
        log.warning("event %s not sent: %s: %s", DATA_ADDED, where, error["msg"])
        return False
    payload: dict[str, Any] = {"added": added, "source": source, "min_labels": minimum}
    try:
        since = _champion_made(model)
        new = store.new_labels(since)
    except Exception as exc:  # the registry or the store failed: the event says so, not due
        payload.update(new_labels=None, error=first_line(exc))
        due = False
    else:
        payload.update(new_labels=new, champion_made=since.isoformat() if since else None)
        due = new >= minimum
    resource = {
        "prefect.resource.id": f"mnist.data.{model}",
        "prefect.resource.name": f"labelled data for {model}",
        RETRAIN_DUE: "true" if due else "false",
    }
    return emit(DATA_ADDED, resource, payload)


class LabelEvents:
    """For a long-running process (`mnist serve`): `note(added, source)` counts trusted labels
    and returns at once; a daemon thread turns what was noted into at most one `labels_arrived`
    every `interval` seconds, on a `Store` of its own. `close()` returns within a second."""

    def __init__(self, store_url: str | None, interval: float = 10.0):
        self.store_url = store_url
        self.interval = interval
        self.sent = 0  # events the server took
        self._lock = threading.Lock()
        self._added = 0
        self._sources: set[str] = set()
        self._wake = threading.Event()
        self._closing = threading.Event()
        self._store: Store | None = None
        self._thread = threading.Thread(target=self._loop, name="label-events", daemon=True)
        self._thread.start()

    def note(self, added: int, source: str) -> None:
        """Count `added` trusted labels from `source`; O(1), never blocks on I/O."""
        with self._lock:
            self._added += added
            self._sources.add(source)
        self._wake.set()

    def _take(self) -> tuple[int, str]:
        with self._lock:
            added, sources = self._added, ",".join(sorted(self._sources))
            self._added, self._sources = 0, set()
            self._wake.clear()
        return added, sources

    def _flush(self) -> None:
        added, sources = self._take()
        if not added:
            return
        try:
            if self._store is None:
                from mnist.datastore import Store

                self._store = Store(self.store_url)
            if labels_arrived(self._store, added, sources):
                self.sent += 1
        except Exception as exc:  # the store cannot be opened: the next note tries again
            log.warning("event %s not sent: %s", DATA_ADDED, first_line(exc))

    def _loop(self) -> None:
        while not self._closing.is_set():
            self._wake.wait()
            if self._closing.is_set():
                break
            self._flush()
            self._closing.wait(self.interval)  # at most one event per interval
        self._flush()  # what was noted before closing, if the process lives long enough

    def close(self) -> None:
        """Stop the thread: it sends what was noted, if it can before the process ends; this
        returns within a second either way."""
        self._closing.set()
        self._wake.set()
        self._thread.join(timeout=1.0)
