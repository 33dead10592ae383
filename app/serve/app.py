"""The FastAPI app: `create_app` wires the model holder, the micro-batcher, the prediction
log's writer, the feedback desk and the admin token into the routes (/predict, /model,
/healthz, /feedback, /reload and the drawing page at /), whose every refusal is a JSON
`{"error": ...}`. The lifespan starts the writer and, at shutdown, flushes it (2 s at most).
"""

from __future__ import annotations

import asyncio
import functools
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
import orjson
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse, Response
from starlette.concurrency import run_in_threadpool

from app.events import LabelEvents
from app.schemas import (
    FeedbackStored,
    Health,
    LogHealth,
    ModelInfo,
    PredictResponse,
    Reloaded,
    errors,
    feedback_request,
    predict_request,
)
from app.serve import admin, parsing
from app.serve import errors as handlers
from app.serve.errors import RequestError
from app.serve.feedback import FeedbackDesk, same_site
from app.serve.holder import ModelHolder, poll, tensorflow_loaded
from mnist import addresses, digits
from mnist.batching import MicroBatcher
from mnist.datastore import PredictionLog, Store, new_ids
from mnist.datastore.tables import PENDING, TRUSTED
from mnist.errors import MnistError
from mnist.prediction_log import LogWriter, Sampling
from mnist.settings import ServeSettings, loopback

PAGE = Path(__file__).parent.parent / "web" / "index.html"
CLOSE_SECONDS = 2.0
"""At shutdown, the longest the prediction log's writer may take to write what is queued."""
EVENT_SECONDS = 10.0
"""Trusted feedback: at most one `mnist.data.added` event per this many seconds."""


def prediction_log(settings: ServeSettings, datastore: str | None) -> LogWriter | None:
    """The writer of the prediction log in the store at `datastore`, or None when it is off."""
    if not settings.prediction_log:
        return None
    sampling = Sampling(images=settings.log_images, confidence=settings.log_confidence)
    return LogWriter(lambda: PredictionLog(Store(datastore)), settings.log_days, sampling)


@functools.lru_cache(maxsize=8)
def _model_json(info: ModelInfo) -> dict:
    """The `model` of each /predict answer, as JSON, once per version served."""
    return info.model_dump(mode="json")


def log_health(writer: LogWriter | None) -> LogHealth:
    if writer is None:
        return LogHealth(on=False)
    stats = writer.stats
    return LogHealth(
        on=True,
        written=stats.written,
        dropped=stats.dropped,
        queued=stats.queued,
        last_error=stats.last_error,
    )


def create_app(settings: ServeSettings | None = None, datastore: str | None = None) -> FastAPI:
    """The FastAPI app serving `settings.model`; each answer is logged in the prediction log,
    and with `settings.feedback`, POST /feedback stores corrected labels, both in the store at
    `datastore` (default: beside the MLflow store). Bound beyond loopback, POST /reload needs
    `settings.admin_token`."""
    # From the environment; pyright takes Field's positional defaults for required fields.
    settings = settings or ServeSettings()  # pyright: ignore[reportCallIssue]
    token = settings.admin_token.get_secret_value() if settings.admin_token else None
    if not token and not loopback(settings.host):
        raise MnistError(
            f"serving on {settings.host}, beyond this machine, needs an admin token "
            "for POST /reload: set MNIST_SERVE_ADMIN_TOKEN"
        )
    stored = settings.feedback or settings.prediction_log
    addresses.check(addresses.serving(settings.model, datastore, stored))  # a wrong one: one line
    secret = settings.feedback_token
    feedback_token = secret.get_secret_value() if secret else None
    desk = (
        FeedbackDesk(datastore, settings.feedback_per_minute, feedback_token)
        if settings.feedback
        else None
    )
    writer = prediction_log(settings, datastore)
    events: list[LabelEvents] = []  # trusted feedback's events, while the server runs
    holder = ModelHolder(settings.model, settings.runtime, settings.onnx_threads)
    poll_seconds, limits = settings.poll_seconds, settings

    def _predict(images: np.ndarray) -> tuple[np.ndarray, ModelInfo]:
        runner, info = holder.current()
        return runner.probabilities(images), info

    batcher = MicroBatcher(_predict, settings.batch_images, settings.batch_wait_ms / 1000)

    @asynccontextmanager
    async def lifespan(app: FastAPI):
        if not holder.loaded:
            await run_in_threadpool(holder.refresh)
        poller = asyncio.create_task(poll(holder, poll_seconds)) if poll_seconds > 0 else None
        batcher.start()
        if writer:
            writer.start()
        if desk and feedback_token:
            events.append(LabelEvents(datastore, EVENT_SECONDS))
        yield
        await batcher.stop()
        if poller:
            poller.cancel()
        if writer:
            await run_in_threadpool(writer.close, CLOSE_SECONDS)
        for label_events in events:
            await run_in_threadpool(label_events.close)

    app = FastAPI(title="mnist-pipeline", lifespan=lifespan)
    app.state.holder, app.state.log = holder, writer
    handlers.install(app)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=errors(400, 413, 415, 422, 503),
        openapi_extra={"requestBody": predict_request(limits.max_images)},
    )
    async def predict(request: Request) -> Response:
        """Digits and their ten probabilities for raw pixels (JSON) or an uploaded image."""
        images = await parsing.images(request, limits)
        if len(images) > limits.max_images:
            raise RequestError(f"{len(images)} images exceed the limit of {limits.max_images}", 413)
        parsing.check(images)
        # one model call for concurrent requests
        pixels = images.astype(np.float32)
        probabilities, info = await batcher(pixels)
        ids: list[int] | list[None] = [None] * len(pixels)
        if writer:
            ids = new_ids(len(pixels))
            writer.record(ids, pixels, probabilities, info.version or "")  # queued, no wait
        answer = {
            "model": _model_json(info),
            "predictions": [
                {
                    "id": id_,
                    "digit": int(p.argmax()),
                    "probabilities": [round(float(v), 6) for v in p],
                }
                for id_, p in zip(ids, probabilities, strict=True)
            ],
        }
        # PredictResponse's shape, serialized directly: FastAPI's validation of the answer
        # against it took about 7% of the route's time at 64 clients (bench/serve_latency.py).
        return Response(orjson.dumps(answer), media_type="application/json")

    @app.get("/model", response_model=ModelInfo, responses=errors(503))
    async def model_info() -> ModelInfo:
        """The model answering: registry name, version, alias, run and test accuracy."""
        return holder.current()[1]

    @app.get("/healthz", response_model=Health, responses=errors(503))
    async def healthz() -> Health:
        """`ok`, or `degraded` with the reason the last refresh of the model failed; the
        runtime of the model (onnx or keras) and whether this process imported TensorFlow."""
        runner, info = holder.current()
        status = "degraded" if holder.last_error else "ok"
        return Health(
            status=status,
            version=info.version,
            refresh_error=holder.last_error,
            feedback=desk is not None,
            prediction_log=log_health(writer),
            runtime=runner.runtime,
            tensorflow_loaded=tensorflow_loaded(),
        )

    if desk is not None:

        @app.post(
            "/feedback",
            status_code=201,
            response_model=FeedbackStored,
            responses=errors(400, 401, 403, 413, 415, 422, 429, 503),
            openapi_extra={"requestBody": feedback_request()},
        )
        async def feedback(request: Request) -> FeedbackStored:
            """Store a sample the model got wrong with its true label (and the prediction it
            corrects), stored durably (committed) before the answer; a bad one is refused,
            unstored. With `Authorization: Bearer <feedback token>` it is trusted and may train
            at once (and is not held to the per-client limit: a labelling tool sends many);
            without, it is pending until a person accepts it."""
            same_site(request)
            trusted = desk.trusted(request)
            images, label, prediction = await parsing.sample(request, limits)
            parsing.check(images)
            if digits.blank(images)[0]:
                raise RequestError(digits.BLANK)
            if not trusted:  # a stranger's valid samples count; a labeller with the token, not
                desk.admit(request.client.host if request.client else "")
            # bounded, off the predictions' thread pool: a store that hangs costs only feedback
            sample, batch = await desk.write(images[0], label, trusted, prediction)
            if trusted:
                for label_events in events:
                    label_events.note(1, "feedback")  # O(1): the event is sent off the request
            review = TRUSTED if trusted else PENDING
            return FeedbackStored(
                id=sample, batch=batch, label=label, prediction=prediction, review=review
            )

    @app.post(
        "/reload",
        response_model=Reloaded,
        responses=errors(401, 503),
        dependencies=[admin.require(token)] if token else [],
    )
    async def reload() -> Reloaded:
        """Look the model reference up now; load the new version if it moved (with
        `Authorization: Bearer TOKEN` when the server has an admin token)."""
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
