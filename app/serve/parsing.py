"""Request bodies to pixels: JSON arrays, raw PNG/JPEG bodies and multipart uploads, each read
within the byte limit before it is parsed, decoded off the event loop (two at a time; a small
JSON body, up to `INLINE_JSON_BYTES`, on it: the hop to a thread costs more than its parse),
and checked for NaN, Inf and the 0-255 range. Every refusal is a `RequestError` with its status.
"""

from __future__ import annotations

import json
import threading
from collections.abc import AsyncGenerator, Callable
from typing import NamedTuple, TypeVar

import numpy as np
import orjson
from fastapi import Request
from starlette.concurrency import run_in_threadpool
from starlette.formparsers import MultiPartException, MultiPartParser

from app.schemas import IMAGE_TYPES
from app.serve.errors import RequestError
from mnist import digits, inference
from mnist.datastore.predictions import MAX_ID
from mnist.preprocess import RAW_RANGE, Arrays
from mnist.readers import IMAGE_SIZE
from mnist.settings import ServeSettings
from mnist.validation import ValidationError, validate

T = TypeVar("T")
INLINE_JSON_BYTES = 64 * 1024
"""A JSON body up to this size (a few images) is parsed on the event loop, not in a thread."""


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


async def _upload(request: Request, body: bytes) -> tuple[bytes, str, str | None, str | None]:
    """The `file` field of a multipart body that was already read within the byte limit, its
    name, and the `label` and `prediction` fields if there are."""

    async def chunks() -> AsyncGenerator[bytes, None]:
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
        label, prediction = form.get("label"), form.get("prediction")
    finally:
        await form.close()
    if not data:
        raise RequestError("empty upload", 400)
    return (
        data,
        upload.filename or "upload",
        label if isinstance(label, str) else None,
        prediction if isinstance(prediction, str) else None,
    )


def _image(data: bytes, name: str) -> np.ndarray:
    try:
        return digits.from_image_bytes(data, name)[None]
    except digits.ImageTooLarge as exc:
        raise RequestError(str(exc), 413) from exc


def _json(body: bytes) -> object:
    try:
        return orjson.loads(body)  # four times json's speed; strict JSON only
    except orjson.JSONDecodeError:
        pass  # NaN, Infinity, huge integers, UTF-16, deep nesting: json parses or names them
    try:
        return json.loads(body)  # NaN and Infinity parse, and are then reported
    except (json.JSONDecodeError, UnicodeDecodeError) as exc:
        raise RequestError(f"body is not valid JSON ({exc})", 400) from exc
    except RecursionError as exc:
        raise RequestError("body is not valid JSON (nested too deeply)", 400) from exc


def json_pixels(body: bytes) -> np.ndarray:
    """A /predict JSON body -> (N, 28, 28) float64 pixels, as sent (not yet range-checked)."""
    return _pixels(_json(body), booleans_possible=b"true" in body or b"false" in body)


def _json_sample(body: bytes) -> tuple[np.ndarray, object, object]:
    """`{"pixels": one image, "label": 0-9, "prediction": ID}` -> (1, 28, 28) float64 pixels,
    the label and the prediction id (None when not given), as sent."""
    payload = _json(body)
    if not isinstance(payload, dict) or "label" not in payload:
        raise RequestError('JSON body needs "pixels" and "label"')
    pixels = _pixels(payload, b"true" in body or b"false" in body)
    return pixels, payload["label"], payload.get("prediction")


def _label(value: object) -> int:
    """The digit a sample shows: 0-9, a JSON integer (or the text of a form field)."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= 9:
        return value
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    raise RequestError(f"label must be a digit 0-9, got {shown[:40]}")


def _prediction(value: object) -> int | None:
    """The logged prediction a sample corrects: a positive 64-bit integer (a JSON integer, or
    the digits of a form field), or none. It need not be in the log."""
    if value is None:
        return None
    if isinstance(value, int) and not isinstance(value, bool) and 0 < value <= MAX_ID:
        return value
    shown = json.dumps(value) if not isinstance(value, str) else repr(value)
    raise RequestError(f"prediction must be a prediction id (a positive integer), got {shown[:40]}")


def _form_int(text: str | None) -> int | str | None:
    """A form field's digits as an integer (at most 19 of them); other text as it is."""
    if text is not None and text.isascii() and text.isdigit() and len(text) <= 19:
        return int(text)
    return text


class Labelled(NamedTuple):
    """One /feedback sample: (1, 28, 28) pixels, its digit, the prediction it corrects."""

    pixels: np.ndarray
    label: int
    prediction: int | None


_DECODING = threading.BoundedSemaphore(2)  # at most two images or bodies decoded at once


def _decode(parse: Callable[..., T], *args: object) -> T:
    with _DECODING:
        return parse(*args)


def _content_type(request: Request) -> str:
    return request.headers.get("content-type", "application/json").split(";")[0].strip()


async def images(request: Request, limits: ServeSettings) -> np.ndarray:
    """The images of a /predict body. Every body shape is read within the byte limit first;
    decoding runs off the event loop, two at a time, so that a burst of large images cannot
    take all the memory."""
    kind = _content_type(request)
    if kind not in ("multipart/form-data", "application/json", *IMAGE_TYPES):
        raise RequestError(f"unsupported content type {kind!r}: send JSON or PNG/JPEG", 415)
    body = await _body(request, limits.max_bytes)
    if kind == "multipart/form-data":
        data, name, _, _ = await _upload(request, body)
        return await run_in_threadpool(_decode, _image, data, name)
    if kind in IMAGE_TYPES:
        return await run_in_threadpool(_decode, _image, body, "upload")
    if len(body) <= INLINE_JSON_BYTES:
        return json_pixels(body)
    return await run_in_threadpool(_decode, json_pixels, body)


async def sample(request: Request, limits: ServeSettings) -> Labelled:
    """One labelled image of a /feedback body, from JSON `{"pixels", "label"}` or a multipart
    `file` and `label` (either may name the `prediction` it corrects), read within the byte
    limit and decoded off the event loop."""
    kind = _content_type(request)
    if kind not in ("multipart/form-data", "application/json"):
        raise RequestError(
            f"unsupported content type {kind!r}: send JSON with pixels and a "
            "label, or a multipart file and label",
            415,
        )
    body = await _body(request, limits.max_bytes)
    if kind == "multipart/form-data":
        data, name, text, named = await _upload(request, body)
        if text is None:
            raise RequestError('multipart feedback needs a "label" field')
        label = _label(int(text) if text in digits.LABELS else text)  # before decoding
        prediction = _prediction(_form_int(named))
        pixels = await run_in_threadpool(_decode, _image, data, name)
    else:
        pixels, given, named = await run_in_threadpool(_decode, _json_sample, body)
        label, prediction = _label(given), _prediction(named)
    if len(pixels) != 1:
        raise RequestError(f"feedback takes one image, got {len(pixels)}")
    return Labelled(pixels, label, prediction)


def check(pixels: np.ndarray) -> None:
    """The checks every request's pixels pass: NaN, Inf, the 0-255 range."""
    low, high = RAW_RANGE
    shaped = pixels.ndim == 3 and pixels.shape[1:] == (IMAGE_SIZE, IMAGE_SIZE)
    if shaped and pixels.size and pixels.min() >= low and pixels.max() <= high:  # NaN: False
        return  # all finite and in range: nothing to report
    try:
        validate({"request": Arrays(pixels[..., None], None)}, "fail", RAW_RANGE)
    except ValidationError as exc:
        raise RequestError(exc.report.summary().replace("request: ", "")) from exc
