"""The HTTP API's documents: request and response models and the error body, so that the
OpenAPI document at /openapi.json says exactly what /predict takes and answers."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from mnist.data import IMAGE_SIZE, PIXELS
from mnist.datastore.predictions import MAX_ID

IMAGE_TYPES = ("image/png", "image/jpeg", "application/octet-stream")
"""Content types of a raw image body."""


class ModelInfo(BaseModel):
    """Which model answers: its registry name, version, alias, run and test accuracy."""

    model_config = ConfigDict(frozen=True, protected_namespaces=())

    uri: str
    name: str | None = None
    version: str | None = None
    alias: str | None = None
    run_id: str | None = None
    test_accuracy: float | None = None


class Prediction(BaseModel):
    id: int | None = Field(
        description="the prediction's id in the prediction log, for POST /feedback to name; "
        "null when the log is off"
    )
    digit: int = Field(ge=0, le=9)
    probabilities: list[float] = Field(min_length=10, max_length=10)


class PredictResponse(BaseModel):
    model: ModelInfo
    predictions: list[Prediction]


class LogHealth(BaseModel):
    """The prediction log's writer since the server started."""

    on: bool = Field(description="whether predictions are logged (`--no-prediction-log`)")
    written: int = Field(default=0, description="predictions written to the log")
    dropped: int = Field(
        default=0, description="predictions not logged: the queue was full or the store failed"
    )
    queued: int = Field(default=0, description="predictions waiting to be written")
    last_error: str | None = Field(
        default=None, description="the store's last error; null once a write succeeds again"
    )


class Health(BaseModel):
    status: Literal["ok", "degraded"]
    version: str | None
    refresh_error: str | None = Field(description="why the last model refresh failed")
    feedback: bool = Field(False, description="whether POST /feedback takes samples")
    prediction_log: LogHealth = Field(description="the prediction log: on, written, dropped")
    runtime: Literal["onnx", "keras"] = Field(
        description="how the model runs: its ONNX copy with ONNX Runtime, or Keras"
    )
    tensorflow_loaded: bool = Field(description="whether the server process imported TensorFlow")


class FeedbackStored(BaseModel):
    id: int = Field(description="the sample's id in the added-data store")
    batch: int = Field(description="the batch it joined (`mnist data list`)")
    label: int = Field(ge=0, le=9)
    prediction: int | None = Field(default=None, description="the logged prediction it corrects")
    review: Literal["trusted", "pending"] = Field(
        description="trusted (sent with the feedback token: it may train at once) or pending "
        "(waits for `mnist data accept`)"
    )


class Reloaded(BaseModel):
    changed: bool
    model: ModelInfo


class ErrorBody(BaseModel):
    error: str = Field(description="what is wrong, in one line")


def _pixels_schema(max_images: int) -> dict[str, Any]:
    """Raw 0-255 pixels: one image (28, 28) or (784,), or a batch (N, 28, 28) or (N, 784)."""
    value = {"type": "number", "minimum": 0, "maximum": 255}
    row = {"type": "array", "items": value, "minItems": IMAGE_SIZE, "maxItems": IMAGE_SIZE}
    flat = {"type": "array", "items": value, "minItems": PIXELS, "maxItems": PIXELS}
    square = {"type": "array", "items": row, "minItems": IMAGE_SIZE, "maxItems": IMAGE_SIZE}
    batch = {"minItems": 1, "maxItems": max_images}
    return {
        "oneOf": [
            flat,
            square,
            {"type": "array", "items": flat, **batch},
            {"type": "array", "items": square, **batch},
        ]
    }


def predict_request(max_images: int) -> dict[str, Any]:
    """The OpenAPI requestBody of POST /predict: JSON pixels, an image, or a multipart file."""
    binary = {"type": "string", "format": "binary"}
    array = _pixels_schema(max_images)
    keyed = [
        {"type": "object", "required": [key], "properties": {key: array}}
        for key in ("pixels", "inputs", "instances")
    ]
    pixels = {
        "anyOf": [*keyed, array],
        "description": 'raw 0-255 pixels: {"pixels": [...]} '
        '(or "inputs", "instances"), or the bare array',
    }
    upload = {"type": "object", "required": ["file"], "properties": {"file": binary}}
    content = {"application/json": {"schema": pixels}, "multipart/form-data": {"schema": upload}}
    content |= {kind: {"schema": binary} for kind in IMAGE_TYPES}
    return {"required": True, "content": content}


def feedback_request() -> dict[str, Any]:
    """The OpenAPI requestBody of POST /feedback: one image's pixels (JSON) or an image file
    (multipart), the digit it shows, and maybe the id of the prediction it corrects."""
    one = _pixels_schema(1)["oneOf"][:2]
    label = {"type": "integer", "minimum": 0, "maximum": 9}
    about = "the id /predict answered for this image (the prediction this label corrects)"
    prediction = {"type": "integer", "minimum": 1, "maximum": MAX_ID, "description": about}
    sample = {
        "type": "object",
        "required": ["pixels", "label"],
        "properties": {"pixels": {"oneOf": one}, "label": label, "prediction": prediction},
    }
    digit = {"type": "string", "enum": [str(d) for d in range(10)]}
    binary = {"type": "string", "format": "binary"}
    named = {"type": "string", "pattern": "^[0-9]{1,19}$", "description": about}
    upload = {
        "type": "object",
        "required": ["file", "label"],
        "properties": {"file": binary, "label": digit, "prediction": named},
    }
    return {
        "required": True,
        "content": {
            "application/json": {"schema": sample},
            "multipart/form-data": {"schema": upload},
        },
    }


def errors(*statuses: int) -> dict[int | str, dict[str, Any]]:
    """OpenAPI responses for the error statuses an endpoint can answer."""
    meaning = {
        400: "a malformed body",
        401: "no or a wrong token (Authorization: Bearer)",
        403: "a cross-site request",
        429: "too many samples from one client",
        413: "a body, image or batch over the limits",
        415: "an unsupported content type",
        422: "pixels or an image that cannot be used",
        503: "no model can be served",
    }
    return {s: {"model": ErrorBody, "description": meaning[s]} for s in statuses}
