"""`mnist serve` with its feedback and prediction log in a real PostgreSQL that goes away:
frozen (SIGSTOP for 30 s: connections taken, never answered) and killed (kill -9, then
started again on its data directory). Predictions answer throughout; feedback answers 201 or
503 within its bound, and 201 again once the database is back; the prediction log's rows of
the outage reach the database or are counted as dropped."""

from __future__ import annotations

import os
import signal
import sys
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import numpy as np
import pytest

from app.serve.feedback import STORE_SECONDS
from app.stack.processes import end
from tests.servers import Postgres, free_port, start_server, stop_server, stopped, tree

pytestmark = pytest.mark.slow  # real servers and processes: the full suite only

BIN = Path(sys.executable).parent
FROZEN_SECONDS = 30
PREDICT_EVERY = 0.2


@pytest.fixture(scope="module")
def postgres_to_break() -> Iterator[Postgres]:
    """A PostgreSQL of this module's own: it is frozen and killed (the session's is shared)."""
    server = Postgres()
    yield server
    server.close()


@pytest.fixture(scope="module")
def served(full_run, workdir, postgres_to_break, tmp_path_factory):
    """`mnist serve` of the suite's model, its feedback and prediction log in that PostgreSQL:
    (its URL, the store's URL, its log file)."""
    _, result = full_run
    store, port = postgres_to_break.url("outage"), free_port()
    log = tmp_path_factory.mktemp("serve-outage") / "serve.log"
    args = [str(BIN / "mnist"), "serve", "--model", result.model_uri, "--port", str(port)]
    args += ["--poll-seconds", "0", "--datastore", store, "--feedback-per-minute", "10000"]
    proc = start_server(args, f"http://127.0.0.1:{port}/healthz", log, {})
    yield f"http://127.0.0.1:{port}", store, log
    stop_server(proc)


def _image(mnist_data, i: int) -> list:
    return mnist_data.test.images[i].tolist()


class Predicting:
    """A client posting one image to /predict every PREDICT_EVERY s until stopped: each
    answer's status (0: no answer within 10 s), seconds and prediction id."""

    def __init__(self, api: str, image: list) -> None:
        self.answers: list[tuple[int, float, int | None]] = []
        self._stop = threading.Event()

        def run() -> None:
            with httpx.Client(timeout=10) as client:
                while not self._stop.wait(PREDICT_EVERY):
                    started = time.monotonic()
                    try:
                        response = client.post(f"{api}/predict", json={"pixels": image})
                        status, id_ = response.status_code, response.json()["predictions"][0]["id"]
                    except (httpx.HTTPError, KeyError, ValueError):
                        status, id_ = 0, None
                    self.answers.append((status, time.monotonic() - started, id_))

        self._thread = threading.Thread(target=run, daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(15)


def _feedback(api: str, image: list, n: int) -> list[tuple[int, float, str]]:
    """`n` corrections posted at once: each one's status, seconds and body."""

    def one(_: int) -> tuple[int, float, str]:
        started = time.monotonic()
        try:
            response = httpx.post(f"{api}/feedback", json={"pixels": image, "label": 7}, timeout=60)
            return response.status_code, time.monotonic() - started, response.text
        except httpx.HTTPError as exc:
            return 0, time.monotonic() - started, repr(exc)

    with ThreadPoolExecutor(n) as pool:
        return list(pool.map(one, range(n)))


def _stored_again(api: str, image: list, seconds: float) -> tuple[int, str, float]:
    """Feedback until it is stored (201) or `seconds` pass: the last status, body and when."""
    started = deadline = time.monotonic()
    deadline += seconds
    while True:
        ((status, _, body),) = _feedback(api, image, 1)
        if status == 201 or time.monotonic() > deadline:
            return status, body, time.monotonic() - started
        time.sleep(0.5)


def _log(api: str) -> dict:
    return httpx.get(f"{api}/healthz").json()["prediction_log"]


def _settled_log(api: str, seconds: float = 30) -> dict:
    """/healthz's prediction log once nothing waits in the queue and the last write went."""
    deadline = time.monotonic() + seconds
    while (log := _log(api))["queued"] or log["last_error"]:
        if time.monotonic() > deadline:
            break
        time.sleep(0.5)
    return log


def _logged_ids(store: str, ids: list[int]) -> set[int]:
    from mnist.datastore import PredictionLog, Store

    return set(PredictionLog(Store(store)).window().ids.tolist()) & set(ids)


def _processes(postgres: Postgres) -> list[int]:
    """The postmaster and its children (backends, writer, checkpointer, ...)."""
    assert postgres.process is not None
    return tree(postgres.process.pid)


def _check_predictions(predicting: Predicting, what: str) -> list[int]:
    statuses = [a[0] for a in predicting.answers]
    seconds = sorted(a[1] for a in predicting.answers)
    print(
        f"\n{what}: {len(seconds)} predictions, median {np.median(seconds):.3f} s, "
        f"max {seconds[-1]:.3f} s"
    )
    assert statuses == [200] * len(statuses), statuses
    assert seconds[-1] < 2, seconds[-5:]
    return [a[2] for a in predicting.answers if a[2] is not None]


def test_a_frozen_postgresql_costs_no_prediction(served, postgres_to_break, mnist_data):
    """30 s of SIGSTOP: /predict answers every 0.2 s within 2 s, 20 corrections at once get
    201 or 503 within the feedback bound; after the thaw, feedback is stored again and the
    prediction log writes the rows of the freeze (or counts them dropped)."""
    api, store, _ = served
    image = _image(mnist_data, 0)
    assert _feedback(api, image, 1)[0][0] == 201  # the store is open and healthy
    before = _settled_log(api)
    predicting = Predicting(api, image)
    with stopped(_processes(postgres_to_break)):
        thaw = time.monotonic() + FROZEN_SECONDS
        time.sleep(1)
        feedback = _feedback(api, image, 20)
        time.sleep(max(thaw - time.monotonic(), 0))
    time.sleep(1)
    predicting.stop()
    ids = _check_predictions(predicting, "frozen")
    times = sorted(f[1] for f in feedback)
    statuses = sorted(f[0] for f in feedback)
    print(f"feedback while frozen: {statuses}, {times[0]:.2f}-{times[-1]:.2f} s")
    assert {f[0] for f in feedback} <= {201, 503}, feedback
    assert times[-1] < STORE_SECONDS + 2, feedback
    # Refused at once (a few writes wait already), or not answered within the bound, or a
    # new connection's own timeout (as long): each 503 names the store.
    unavailable = ("added-data store is busy or away", "added-data store is unavailable")
    assert all(any(u in f[2] for u in unavailable) for f in feedback if f[0] == 503), feedback
    status, body, took = _stored_again(api, image, 20)
    print(f"feedback stored again {took:.1f} s after the thaw")
    assert status == 201, body
    after = _settled_log(api)
    logged, dropped = _logged_ids(store, ids), after["dropped"] - before["dropped"]
    print(f"prediction log: {len(logged)} of {len(ids)} rows written, {dropped} dropped")
    assert len(logged) + dropped >= len(ids) and after["last_error"] is None, after


def test_a_killed_postgresql_costs_no_prediction(served, postgres_to_break, mnist_data):
    """kill -9 of the postmaster, started again on its data directory: /predict answers
    throughout, feedback answers 503 at once while it is down and 201 once it is back; the
    prediction log writes again on its own."""
    api, store, _ = served
    image = _image(mnist_data, 1)
    before = _settled_log(api)
    predicting = Predicting(api, image)
    try:
        postmaster = postgres_to_break.process
        assert postmaster is not None
        others = _processes(postgres_to_break)[1:]
        os.kill(postmaster.pid, signal.SIGKILL)
        postmaster.wait(10)
        # Its backends notice and leave (they hold its shared memory, which a new one needs).
        end(lambda: [pid for pid in others if Path(f"/proc/{pid}").exists()], grace=10)
        time.sleep(1)
        down = _feedback(api, image, 5)
        print(f"feedback while down: {[(f[0], round(f[1], 2)) for f in down]}")
        assert [f[0] for f in down] == [503] * 5, down
        assert all(f[1] < 2 for f in down), down  # refused at once, nothing to wait for
        assert all("added-data store is unavailable" in f[2] for f in down), down
        postgres_to_break.start()
        status, body, took = _stored_again(api, image, 20)
        print(f"feedback stored again {took:.1f} s after the restart")
        assert status == 201, body
        time.sleep(2)
    finally:  # a failure above must not leave the next test without its database
        predicting.stop()
        if postgres_to_break.process is None or postgres_to_break.process.poll() is not None:
            postgres_to_break.start()
    ids = _check_predictions(predicting, "killed")
    after = _settled_log(api)
    logged, dropped = _logged_ids(store, ids), after["dropped"] - before["dropped"]
    print(f"prediction log: {len(logged)} of {len(ids)} rows written, {dropped} dropped")
    assert len(logged) + dropped >= len(ids) and after["last_error"] is None, after
    assert ids[-1] in logged  # written again after the restart
