"""POST /feedback's guards and storage: `same_site` refuses another site's page posting to the
server; `FeedbackDesk` tells trusted feedback (the feedback token) from pending (anonymous),
admits at most `per_minute` valid samples from one client address in any minute (a moving
window of the `limits` library) and stores them in the added-data store, bounded in time and
in number (`FeedbackDesk.write`) so that a store that hangs never holds the predictions up.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import secrets
import threading
from urllib.parse import urlparse

import numpy as np
from fastapi import Request
from limits import RateLimitItemPerMinute
from limits.storage import MemoryStorage
from limits.strategies import MovingWindowRateLimiter

from app.serve.errors import RequestError
from mnist.datastore import Store
from mnist.errors import MnistError

log = logging.getLogger(__name__)

MAX_CLIENTS = 10_000
"""Client addresses remembered before the idle ones are forgotten."""
STORE_SECONDS = 10.0
"""The longest a request waits for the store to take its sample before answering 503 (a sound
store takes milliseconds): as long as PostgreSQL's connect timeout
(`mnist.datastore.engines.CONNECT_SECONDS`), whose own 503 may come first."""
MAX_WRITES = 4
"""Store calls in flight at most: a frozen database holds each call (and its thread) until it
thaws; this bounds those threads. A sample past them waits for a free one, within the same
`STORE_SECONDS`."""
MAX_WAITING = 64
"""Samples waiting for a free write at most; another is refused (503) at once."""
BUSY = "cannot store the sample now: the added-data store is busy or away"


def same_site(request: Request) -> None:
    """Refuse a browser's cross-site POST (another site's page posting to this server): its
    Origin header names another host than the one it was sent to."""
    origin = request.headers.get("origin")
    if origin and urlparse(origin).netloc != request.headers.get("host", ""):
        raise RequestError(f"cross-site request from {origin[:80]} refused", 403)


class FeedbackDesk:
    """Where POST /feedback stores samples: the added-data store, opened on first use (a store
    that is down or hangs costs the feedback a 503 within `seconds`, never the predictions);
    at most `per_minute` samples from one client address a minute. A sample sent with
    `token` is trusted, one without any is pending (it waits for a person's
    `mnist data accept`)."""

    def __init__(
        self,
        url: str | None,
        per_minute: int,
        token: str | None = None,
        *,
        seconds: float | None = None,
        max_writes: int | None = None,
        max_waiting: int = MAX_WAITING,
    ):
        self.url, self.per_minute, self.token = url, per_minute, token
        self.seconds = STORE_SECONDS if seconds is None else seconds
        self.max_writes = MAX_WRITES if max_writes is None else max_writes
        self._store: Store | None = None
        self._opening = threading.Lock()
        self.max_waiting = max_waiting
        self._writes = 0  # store calls whose thread has not returned yet
        self._waiting = 0  # requests waiting for one of those to end
        self._counting = threading.Lock()
        self._limit = RateLimitItemPerMinute(per_minute)
        self._hits = MemoryStorage()
        self._limiter = MovingWindowRateLimiter(self._hits)

    def trusted(self, request: Request) -> bool:
        """True for `Authorization: Bearer <feedback token>`, False without the header; any
        other credential (a wrong token, another scheme, a token this server does not have)
        is refused (401), never taken as pending, and counts against the client's minute (no
        guessing faster than anonymous feedback). Compared in constant time."""
        header = request.headers.get("authorization")
        if header is None:
            return False
        scheme, _, given = header.partition(" ")
        if not self.token:
            raise RequestError(
                "this server has no feedback token (MNIST_SERVE_FEEDBACK_TOKEN): send feedback "
                "without an Authorization header",
                401,
            )
        right = secrets.compare_digest(given.strip().encode(), self.token.encode())
        if scheme.lower() != "bearer" or not right:
            self.admit(request.client.host if request.client else "")  # guesses use the minute
            raise RequestError("wrong feedback token (Authorization: Bearer)", 401)
        return True

    def admit(self, client: str) -> None:
        """Count one sample from `client`; refused (429) past the limit. Called only for a
        valid sample, so that refused ones do not use up a client's minute."""
        if len(self._hits.events) > MAX_CLIENTS:
            self._forget_idle()
        if not self._limiter.hit(self._limit, "feedback", client):
            raise RequestError(
                f"more than {self.per_minute} samples a minute from one client: try again later",
                429,
            )

    def _forget_idle(self) -> None:
        """Drop the addresses with no hit left in the window: `limits`' memory storage trims
        old hits but keeps every key it has seen (limits 5.8), so a server reached from many
        addresses would grow without bound."""
        for key, hits in list(self._hits.events.items()):
            if not hits:
                with self._hits.locks[key]:
                    if not self._hits.events.get(key):
                        self._hits.events.pop(key, None)
                self._hits.locks.pop(key, None)

    def store(
        self, pixels: np.ndarray, label: int, trusted: bool, prediction: int | None = None
    ) -> tuple[int, int]:
        """Store one sample durably, tied to the `prediction` it corrects; its id and the batch
        it joined (today's trusted or pending one)."""
        try:
            with self._opening:  # one store (one engine), however many writes race to open it
                if self._store is None:
                    self._store = Store(self.url)
            return self._store.feedback(pixels, label, trusted=trusted, prediction_id=prediction)
        except MnistError as exc:
            log.error("cannot store a feedback sample: %s", exc)
            raise RequestError(
                "cannot store the sample now: the added-data store is unavailable", 503
            ) from exc

    @property
    def writes(self) -> int:
        """Store calls in flight (their threads still running, answered or not)."""
        with self._counting:
            return self._writes

    async def _take_a_write(self, deadline: float) -> None:
        """One of the `max_writes` slots, waited for until `deadline` (event-loop time)."""
        loop = asyncio.get_running_loop()
        with self._counting:
            if self._writes >= self.max_writes and self._waiting >= self.max_waiting:
                raise RequestError(f"{BUSY} ({self._writes} writes still waiting for it)", 503)
            self._waiting += 1
        try:
            while True:
                with self._counting:
                    if self._writes < self.max_writes:
                        self._writes += 1
                        return
                    if loop.time() >= deadline:
                        busy = f"{BUSY} ({self._writes} writes still waiting for it)"
                        raise RequestError(busy, 503)
                await asyncio.sleep(0.02)
        finally:
            with self._counting:
                self._waiting -= 1

    async def write(
        self, pixels: np.ndarray, label: int, trusted: bool, prediction: int | None = None
    ) -> tuple[int, int]:
        """`store`, in a daemon thread of its own (off the thread pool that the predictions
        use), at most `max_writes` at once (a sample past them waits for a free one; past
        `max_waiting` waiting, 503 at once), all waited for at most `seconds` (then 503). A
        write that timed out runs on until the store answers: when a frozen database thaws, it
        may still commit, so a client told 503 may find its sample stored, and stored twice if
        it sent it again (feedback is a claim to review, not a count; `mnist data` shows and
        removes a batch)."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.seconds
        await self._take_a_write(deadline)
        answer: asyncio.Future[tuple[int, int]] = loop.create_future()

        def settle(result: tuple[int, int] | None, error: BaseException | None) -> None:
            if answer.cancelled():  # the request stopped waiting: its client was told 503
                if result is not None:
                    log.warning("feedback sample %d stored after its request timed out", result[0])
            elif error is not None:
                answer.set_exception(error)
            elif result is not None:
                answer.set_result(result)

        def run() -> None:
            result, error = None, None
            try:
                result = self.store(pixels, label, trusted, prediction)
            except BaseException as exc:  # handed to the request, whatever it is
                error = exc
            finally:
                with self._counting:
                    self._writes -= 1
            with contextlib.suppress(RuntimeError):  # the event loop closed meanwhile
                loop.call_soon_threadsafe(settle, result, error)

        threading.Thread(target=run, name="feedback-store", daemon=True).start()
        try:
            return await asyncio.wait_for(answer, max(0.0, deadline - loop.time()))
        except TimeoutError:
            log.error("the added-data store did not take a feedback sample in %s s", self.seconds)
            raise RequestError(
                f"{BUSY}: it did not answer within {self.seconds:g} s", 503
            ) from None
