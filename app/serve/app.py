"""The FastAPI app: `create_app` wires the model holder, the micro-batcher, the feedback desk
and the admin token into the routes (/predict, /model, /healthz, /feedback, /reload and the
drawing page at /), whose every refusal is a JSON `{"error": ...}`.
"""

from __future__ import annotations

import asyncio
from contextlib import asynccontextmanager
from pathlib import Path

import numpy as np
from fastapi import FastAPI, Request
from fastapi.responses import HTMLResponse
from starlette.concurrency import run_in_threadpool

from app.schemas import (
    FeedbackStored,
    Health,
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
from app.serve.holder import ModelHolder, poll
from mnist import digits
from mnist.batching import MicroBatcher
from mnist.errors import MnistError
from mnist.evaluation import predict_proba
from mnist.settings import ServeSettings, loopback

PAGE = Path(__file__).parent.parent / "web" / "index.html"


def create_app(settings: ServeSettings | None = None, datastore: str | None = None) -> FastAPI:
    """The FastAPI app serving `settings.model`; with `settings.feedback`, POST /feedback
    stores corrected labels in the added-data store at `datastore` (default: beside the
    MLflow store). Bound beyond loopback, POST /reload needs `settings.admin_token`."""
    # From the environment; pyright takes Field's positional defaults for required fields.
    settings = settings or ServeSettings()  # pyright: ignore[reportCallIssue]
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
        poller = asyncio.create_task(poll(holder, poll_seconds)) if poll_seconds > 0 else None
        batcher.start()
        yield
        await batcher.stop()
        if poller:
            poller.cancel()

    app = FastAPI(title="mnist-pipeline", lifespan=lifespan)
    app.state.holder = holder
    handlers.install(app)

    @app.post(
        "/predict",
        response_model=PredictResponse,
        responses=errors(400, 413, 415, 422, 503),
        openapi_extra={"requestBody": predict_request(limits.max_images)},
    )
    async def predict(request: Request) -> dict:
        """Digits and their ten probabilities for raw pixels (JSON) or an uploaded image."""
        images = await parsing.images(request, limits)
        if len(images) > limits.max_images:
            raise RequestError(f"{len(images)} images exceed the limit of {limits.max_images}", 413)
        parsing.check(images)
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
            same_site(request)
            images, label = await parsing.sample(request, limits)
            parsing.check(images)
            if digits.blank(images)[0]:
                raise RequestError(digits.BLANK)
            desk.admit(request.client.host if request.client else "")  # valid samples count
            sample, batch = await run_in_threadpool(desk.store, images[0], label)
            return FeedbackStored(id=sample, batch=batch, label=label)

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
