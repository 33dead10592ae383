"""Serve a registered model over HTTP: prediction API, model info, health, a drawing page.

The model is looked up by reference (`models:/NAME@ALIAS` by default); an alias is resolved
to a version, and that exact version is loaded, so every answer names the version that gave
it. A poller (and `POST /reload`) picks up a moved alias without a restart.
"""

from __future__ import annotations

import asyncio
import collections
import gc
import json
import logging
import re
import secrets
import threading
import time
from contextlib import asynccontextmanager
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import urlparse

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, JSONResponse
from starlette.concurrency import run_in_threadpool
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.formparsers import MultiPartException, MultiPartParser

from app.schemas import (
    IMAGE_TYPES,
    FeedbackStored,
    Health,
    ModelInfo,
    PredictResponse,
    Reloaded,
    errors,
    feedback_request,
    predict_request,
)
from mnist import digits, inference, registry, tracking
from mnist.batching import MicroBatcher
from mnist.datastore import Store
from mnist.errors import MnistError, first_line
from mnist.evaluation import predict_proba
from mnist.preprocess import RAW_RANGE, Arrays
from mnist.settings import ServeSettings, loopback
from mnist.validation import ValidationError, validate

if TYPE_CHECKING:
    import keras

log = logging.getLogger(__name__)
PAGE = Path(__file__).with_name("web") / "index.html"
_MODELS_URI = re.compile(r"^models:/(?P<name>[^/@]+)(?:@(?P<alias>[^/]+)|/(?P<version>\d+))$")


class RequestError(MnistError):
    """A bad request: answered with `status` and a JSON error naming the problem."""

    def __init__(self, message: str, status: int = 422):
        super().__init__(message)
        self.status = status


def _settle() -> None:
    """Collect what a model swap left behind once, then freeze every live object (TensorFlow,
    MLflow, the model: over a million) out of the garbage collector's sight. Otherwise each
    full collection walks them all for about 0.3 s, holding every request in flight: 2% of
    requests at 64 clients waited that long (bench/serve_latency.py). An old model that a
    request still held at the swap stays frozen, in memory, until the next swap."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelHolder:
    """The model in service; `refresh` swaps in a new version when the reference moves."""

    def __init__(self, ref: str):
        self.ref = ref
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # the poller and /reload, one at a time
        self._current: tuple[keras.Model, ModelInfo] | None = None
        self.last_error: str | None = None  # of the last refresh; the old model keeps serving

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def _resolve(self) -> ModelInfo:
        match = _MODELS_URI.match(self.ref)
        if not match:
            return ModelInfo(uri=self.ref)
        name, alias = match["name"], match["alias"]
        v = registry.get(name, match["version"], alias)
        return ModelInfo(
            uri=f"models:/{name}/{v.version}",
            name=name,
            version=v.version,
            alias=alias,
            run_id=v.run_id,
            test_accuracy=v.test_accuracy,
        )

    def refresh(self) -> bool:
        """Load the model the reference points at now, if it changed; True if it did. Any
        failure leaves the model in service as it was and is kept in `last_error`."""
        with self._refreshing:
            return self._refresh()

    def _refresh(self) -> bool:
        try:
            info = self._resolve()
            if self._current and self._current[1] == info:
                self.last_error = None
                return False
            model = tracking.load_model(info.uri)
        except Exception as exc:  # whatever a bad version or a sick store throws
            mine = isinstance(exc, MnistError)
            self.last_error = (
                first_line(exc) if mine else f"{type(exc).__name__}: {first_line(exc)}"
            )
            raise MnistError(self.last_error) from exc
        with self._lock:
            self._current = (model, info)
        _settle()
        self.last_error = None
        return True

    def current(self) -> tuple[keras.Model, ModelInfo]:
        with self._lock:
            if self._current is None:
                raise RequestError("no model loaded", 503)
            return self._current


def _holds_a_boolean(value: object) -> bool:
    """Whether nested lists hold a `true` or `false` (numpy would take them as 1 and 0)."""
    stack = [value]
    while stack:
        item = stack.pop()
        if isinstance(item, bool):
            return True
        if isinstance(item, list):
            stack.extend(item)
    return False


def _pixels(payload: object, booleans_possible: bool = True) -> np.ndarray:
    """JSON `{"pixels": ...}` / `{"inputs": ...}` / a bare array -> (N, 28, 28) float64, so that
    the range check sees the numbers as sent."""
    if isinstance(payload, dict):
        keys = [k for k in ("pixels", "inputs", "instances") if k in payload]
        if not keys:
            raise RequestError('JSON body needs a "pixels" (or "inputs") array')
        payload = payload[keys[0]]
    if booleans_possible and _holds_a_boolean(payload):
        raise RequestError("pixels must be numbers, not true or false")
    try:
        arr = np.asarray(payload, dtype=np.float64)
    except (ValueError, TypeError, OverflowError) as exc:  # ragged, text, or past float range
        raise RequestError(f"pixels must be a regular array of numbers ({exc})") from exc
    except RecursionError as exc:
        raise RequestError("pixels must be a regular array of numbers (nested too deeply)") from exc
    if arr.size == 0:
        raise RequestError("no pixels given")
    return inference.as_images(arr, "pixels")


async def _body(request: Request, limit: int) -> bytes:
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise RequestError(f"request body of {declared} bytes exceeds the {limit}-byte limit", 413)
    body = bytearray()
    async for chunk in request.stream():
        body += chunk
        if len(body) > limit:
            raise RequestError(f"request body exceeds the {limit}-byte limit", 413)
    if not body:
        raise RequestError("empty request body", 400)
    return bytes(body)


async def _upload(request: Request, body: bytes) -> tuple[bytes, str, str | None]:
    """The `file` field of a multipart body that was already read within the byte limit, its
    name, and the `label` field if there is one."""

    async def chunks():
        yield body
        yield b""

    parser = MultiPartParser(
        request.headers, chunks(), max_files=1, max_fields=10, max_part_size=len(body)
    )
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(f"malformed multipart body ({exc.message})", 400) from exc
    try:
        upload = form.get("file")
        if upload is None or isinstance(upload, str):
            raise RequestError('multipart upload needs a "file" field', 400)
        data = await upload.read()
        label = form.get("label")
    finally:
        await form.close()
    if not data:
        raise RequestError("empty upload", 400)
    return data, upload.filename or "upload", label if isinstance(label, str) else None


def _image(data: bytes, name: str) -> np.ndarray:
    try:
        return digits.from_image_bytes(data, name)[None]
    except digits.ImageTooLarge as exc:
        raise RequestError(str(exc), 413) from exc


def _json(body: bytes) -> object:
    try:
        return json.loads(body)  # NaN and Infinity parse, and are then reported
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON ({exc})", 400) from exc
    except RecursionError as exc:
        raise RequestError("body is not valid JSON (nested too deeply)", 400) from exc


def _json_pixels(body: bytes) -> np.ndarray:
    return _pixels(_json(body), booleans_possible=b"true" in body or b"false" in body)


def _json_sample(body: bytes) -> tuple[np.ndarray, object]:
    """`{"pixels": one image, "label": 0-9}` -> (1, 28, 28) float64 pixels and the label."""
    payload = _json(body)
    if not isinstance(payload, dict) or "label" not in payload:
        raise RequestError('JSON body needs "pixels" and "label"')
    return _pixels(payload, b"true" in body or b"false" in body), payload["label"]


def _label(value: object) -> int:
    """The digit a sample shows: 0-9, a JSON integer (or the text of a form field)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return value
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    raise RequestError(f"label must be a digit 0-9, got {shown[:40]}")


_DECODING = threading.BoundedSemaphore(2)  # at most two images or bodies decoded at once


def _decode(parse, *args) -> np.ndarray:
    with _DECODING:
        return parse(*args)


async def _images(request: Request, limits: ServeSettings) -> np.ndarray:
    """Every body shape is read within the byte limit first; decoding runs off the event loop,
    two at a time, so that a burst of large images cannot take all the memory."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind not in ("multipart/form-data", "application/json", *IMAGE_TYPES):
        raise RequestError(f"unsupported content type {kind!r}: send JSON or PNG/JPEG", 415)
    body = await _body(request, limits.max_bytes)
    if kind == "multipart/form-data":
        data, name, _ = await _upload(request, body)
        return await run_in_threadpool(_decode, _image, data, name)
    if kind in IMAGE_TYPES:
        return await run_in_threadpool(_decode, _image, body, "upload")
    return await run_in_threadpool(_decode, _json_pixels, body)


async def _sample(request: Request, limits: ServeSettings) -> tuple[np.ndarray, int]:
    """One labelled image from JSON `{"pixels", "label"}` or a multipart `file` and `label`,
    read within the byte limit and decoded off the event loop."""
    kind = request.headers.get("content-type", "application/json").split(";")[0].strip()
    if kind not in ("multipart/form-data", "application/json"):
        raise RequestError(
            f"unsupported content type {kind!r}: send JSON with pixels and a "
            "label, or a multipart file and label",
            415,
        )
    body = await _body(request, limits.max_bytes)
    if kind == "multipart/form-data":
        data, name, label = await _upload(request, body)
        if label is None:
            raise RequestError('multipart feedback needs a "label" field')
        label = _label(int(label) if label in digits.LABELS else label)  # before decoding
        images = await run_in_threadpool(_decode, _image, data, name)
    else:
        images, label = await run_in_threadpool(_decode, _json_sample, body)
        label = _label(label)
    if len(images) != 1:
        raise RequestError(f"feedback takes one image, got {len(images)}")
    return images, label


def _check(images: np.ndarray) -> None:
    """The checks every request's pixels pass: NaN, Inf, the 0-255 range."""
    try:
        validate({"request": Arrays(images[..., None], None)}, "fail", RAW_RANGE)
    except ValidationError as exc:
        raise RequestError(exc.report.summary().replace("request: ", "")) from exc


class FeedbackDesk:
    """Where POST /feedback stores samples: the added-data store, opened on first use (a store
    that is down costs the feedback, never the predictions); at most `per_minute` samples
    from one client address a minute."""

    def __init__(self, url: str | None, per_minute: int):
        self.url, self.per_minute = url, per_minute
        self._store: Store | None = None
        self._recent: dict[str, collections.deque] = {}
        self._lock = threading.Lock()

    def admit(self, client: str) -> None:
        now = time.monotonic()
        with self._lock:
            if len(self._recent) > 10_000:  # forget idle clients
                self._recent = {k: q for k, q in self._recent.items() if q and now - q[-1] < 60}
            recent = self._recent.setdefault(client, collections.deque())
            while recent and now - recent[0] > 60:
                recent.popleft()
            if len(recent) >= self.per_minute:
                raise RequestError(
                    f"more than {self.per_minute} samples a minute from one "
                    "client: try again later",
                    429,
                )
            recent.append(now)

    def store(self, pixels: np.ndarray, label: int) -> tuple[int, int]:
        try:
            if self._store is None:
                self._store = Store(self.url)
            return self._store.feedback(pixels, label)
        except MnistError as exc:
            log.error("cannot store a feedback sample: %s", exc)
            raise RequestError(
                "cannot store the sample now: the added-data store is unavailable", 503
            ) from exc


def _same_site(request: Request) -> None:
    """Refuse a browser's cross-site POST (another site's page posting to this server): its
    Origin header names another host than the one it was sent to."""
    origin = request.headers.get("origin")
    if origin and urlparse(origin).netloc != request.headers.get("host", ""):
        raise RequestError(f"cross-site request from {origin[:80]} refused", 403)


def create_app(settings: ServeSettings | None = None, datastore: str | None = None) -> FastAPI:
    """The FastAPI app serving `settings.model`; with `settings.feedback`, POST /feedback
    stores corrected labels in the added-data store at `datastore` (default: beside the
    MLflow store). Bound beyond loopback, POST /reload needs `settings.admin_token`."""
    settings = settings or ServeSettings()
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if not token and not loopback(settings.host):
        raise MnistError(
            f"serving on {settings.host}, beyond this machine, needs an admin token "
            "for POST /reload: set MNIST_SERVE_ADMIN_TOKEN"
        )
    desk = FeedbackDesk(datastore, settings.feedback_per_minute) if settings.feedback else None
    holder, poll_seconds, limits = ModelHolder(settings.model), settings.poll_seconds, settings

    def _predict(images: np.ndarray) -> tuple[np.ndarray, ModelInfo]:
        model, info = holder.current()
        return predict_proba(model, images), info

    batcher = MicroBatcher(_predict, settings.batch_images, settings.batch_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not holder.loaded:
            await run_in_threadpool(holder.refresh)
        poller = asyncio.create_task(_poll()) if poll_seconds > 0 else None
        batcher.start()
        yield
        await batcher.stop()
        if poller:
            poller.cancel()

    async def _poll() -> None:
        while True:
            await asyncio.sleep(poll_seconds)
            try:
                await run_in_threadpool(holder.refresh)
            except MnistError as exc:  # keep serving the loaded version; /healthz says why
                log.warning("cannot refresh %s: %s", holder.ref, exc)

    app = FastAPI(title="mnist-pipeline", lifespan=lifespan)
    app.state.holder = holder

    @app.exception_handler(MnistError)
    async def _error(request: Request, exc: MnistError) -> JSONResponse:
        status = exc.status if isinstance(exc, RequestError) else 422
        return JSONResponse({"error": str(exc)}, status_code=status)

    @app.exception_handler(StarletteHTTPException)
    async def _http_error(request: Request, exc: StarletteHTTPException) -> JSONResponse:
        return JSONResponse({"error": str(exc.detail)}, exc.status_code, headers=exc.headers)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=errors(400, 413, 415, 422, 503),
        openapi_extra={"requestBody": predict_request(limits.max_images)},
    )
    async def predict(request: Request) -> dict:
        """Digits and their ten probabilities for raw pixels (JSON) or an uploaded image."""
        images = await _images(request, limits)
        if len(images) > limits.max_images:
            raise RequestError(f"{len(images)} images exceed the limit of {limits.max_images}", 413)
        _check(images)
        # one model call for concurrent requests
        probabilities, info = await batcher(images.astype(np.float32))
        return {
            "model": info,
            "predictions": [
                {"digit": int(p.argmax()), "probabilities": [round(float(v), 6) for v in p]}
                for p in probabilities
            ],
        }

    @app.get("/model", response_model=ModelInfo, responses=errors(503))
    async def model_info() -> ModelInfo:
        """The model answering: registry name, version, alias, run and test accuracy."""
        return holder.current()[1]

    @app.get("/healthz", response_model=Health, responses=errors(503))
    async def healthz() -> Health:
        """`ok`, or `degraded` with the reason the last refresh of the model failed."""
        _, info = holder.current()
        status = "degraded" if holder.last_error else "ok"
        return Health(
            status=status,
            version=info.version,
            refresh_error=holder.last_error,
            feedback=desk is not None,
        )

    if desk is not None:

        @app.post(
            "/feedback",
            status_code=201,
            response_model=FeedbackStored,
            responses=errors(400, 403, 413, 415, 422, 429, 503),
            openapi_extra={"requestBody": feedback_request()},
        )
        async def feedback(request: Request) -> FeedbackStored:
            """Store a sample the model got wrong with its true label, for the next retraining:
            stored durably (committed) before the answer; a bad one is refused, unstored."""
            _same_site(request)
            images, label = await _sample(request, limits)
            _check(images)
            if digits.blank(images)[0]:
                raise RequestError(digits.BLANK)
            desk.admit(request.client.host if request.client else "")  # valid samples count
            sample, batch = await run_in_threadpool(desk.store, images[0], label)
            return FeedbackStored(id=sample, batch=batch, label=label)

    @app.post("/reload", response_model=Reloaded, responses=errors(401, 503))
    async def reload(request: Request) -> Reloaded:
        """Look the model reference up now; load the new version if it moved (with
        `Authorization: Bearer TOKEN` when the server has an admin token)."""
        if token:
            scheme, _, given = request.headers.get("authorization", "").partition(" ")
            right = secrets.compare_digest(given.encode(), token.encode())
            if scheme.lower() != "bearer" or not right:
                raise RequestError(
                    "POST /reload needs the admin token (Authorization: Bearer)", 401
                )
        try:
            changed = await run_in_threadpool(holder.refresh)
        except MnistError as exc:
            serving = holder.current()[1].version if holder.loaded else None
            raise RequestError(f"{exc} (still serving version {serving})", 503) from exc
        return Reloaded(changed=changed, model=holder.current()[1])

    @app.get("/", response_class=HTMLResponse)
    async def page() -> str:
        """The drawing page."""
        return PAGE.read_text()

    return app
