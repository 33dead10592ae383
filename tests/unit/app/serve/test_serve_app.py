"""The routes of `app.serve.app` in process: answers, the `{error}` body of every refusal, the
admin token of /reload and the OpenAPI document."""

from __future__ import annotations

import io

import numpy as np
import pytest
from PIL import Image

from mnist.errors import MnistError


def _image(first: float) -> list[list[float]]:
    pixels = np.zeros((28, 28))
    pixels[5:20, 14] = 200
    pixels[0, 0] = first
    return pixels.tolist()


def _png(pixels: np.ndarray) -> bytes:
    out = io.BytesIO()
    Image.fromarray(pixels.astype(np.uint8)).save(out, format="PNG")
    return out.getvalue()


def test_predict_answers_each_image_with_its_own_digit_and_names_the_model(client):
    api = client()
    body = api.post("/predict", json={"pixels": [_image(d) for d in (3, 1, 4, 1, 5)]})
    assert body.status_code == 200, body.text
    answer = body.json()
    assert [p["digit"] for p in answer["predictions"]] == [3, 1, 4, 1, 5]
    assert answer["predictions"][0]["probabilities"] == [0, 0, 0, 1, 0, 0, 0, 0, 0, 0]
    assert answer["model"]["uri"] == "stand-in"


def test_predict_takes_a_png_body_and_a_multipart_file(client):
    api, pixels = client(), np.asarray(_image(6))
    raw = api.post("/predict", content=_png(pixels), headers={"Content-Type": "image/png"})
    form = api.post("/predict", files={"file": ("d.png", _png(pixels), "image/png")})
    assert raw.status_code == form.status_code == 200, (raw.text, form.text)
    assert raw.json()["predictions"][0]["digit"] == form.json()["predictions"][0]["digit"] == 6


BAD = [
    (
        "NaN",
        dict(content=b'{"pixels": [' + b",".join([b"NaN"] + [b"0"] * 783) + b"]}"),
        422,
        "1 NaN pixel(s)",
    ),
    ("out of range", dict(json={"pixels": [[300.0] * 784]}), 422, "outside [0.0, 255.0]"),
    ("wrong shape", dict(json={"pixels": np.zeros((2, 27, 27)).tolist()}), 422, "(2, 27, 27)"),
    ("booleans", dict(json={"pixels": [[False] * 784]}), 422, "not true or false"),
    ("no pixels key", dict(json={"image": []}), 422, '"pixels"'),
    ("empty body", dict(content=b""), 400, "empty request body"),
    ("broken JSON", dict(content=b"{pixels"), 400, "not valid JSON"),
    (
        "too many images",
        dict(json={"pixels": np.zeros((6, 784)).tolist()}),
        413,
        "6 images exceed the limit of 5",
    ),
    ("too many bytes", dict(content=b"0" * 40_001), 413, "exceeds the 40000-byte limit"),
    (
        "not an image",
        dict(content=b"hello", headers={"Content-Type": "image/png"}),
        422,
        "not a readable PNG or JPEG",
    ),
    (
        "wrong type",
        dict(content=b"1,2", headers={"Content-Type": "text/csv"}),
        415,
        "unsupported content type 'text/csv'",
    ),
]


@pytest.mark.parametrize(("what", "request_", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_a_bad_predict_request_gets_its_status_and_a_one_line_error(
    client, what, request_, status, message
):
    api = client(max_images=5, max_bytes=40_000)
    request_.setdefault("headers", {"Content-Type": "application/json"})
    response = api.post("/predict", **request_)
    assert response.status_code == status, response.text
    assert message in response.json()["error"] and "\n" not in response.json()["error"]
    assert api.model.calls == []  # refused before the model


def test_framework_errors_share_the_error_body(client):
    api = client()
    assert api.get("/nowhere").json() == {"error": "Not Found"}
    assert api.get("/predict").json() == {"error": "Method Not Allowed"}


def test_model_and_health_describe_the_model_in_service(client):
    api = client(feedback=False)
    assert api.get("/model").json()["uri"] == "stand-in"
    health = api.get("/healthz").json()
    assert isinstance(health.pop("tensorflow_loaded"), bool)  # other tests may import it
    assert health == {
        "status": "ok",
        "version": None,
        "refresh_error": None,
        "feedback": False,
        "runtime": "onnx",
        "prediction_log": {
            "on": True,
            "written": 0,
            "dropped": 0,
            "queued": 0,
            "last_error": None,
        },
    }


def test_reload_without_a_token_on_loopback_needs_no_header(client):
    response = client().post("/reload")
    assert response.status_code == 200, response.text
    assert response.json()["changed"] is False and response.json()["model"]["uri"] == "stand-in"


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer", "Basic s3cret", "s3cret", "Bearer s3cret2"]
)
def test_reload_refuses_a_missing_or_wrong_admin_token(client, authorization):
    api = client(host="0.0.0.0", admin_token="s3cret")
    headers = {"Authorization": authorization} if authorization else {}
    response = api.post("/reload", headers=headers)
    assert response.status_code == 401
    assert response.json() == {
        "error": "POST /reload needs the admin token (Authorization: Bearer)"
    }


def test_reload_takes_the_admin_token(client):
    api = client(host="0.0.0.0", admin_token="s3cret")
    for scheme in ("Bearer", "bearer"):
        response = api.post("/reload", headers={"Authorization": f"{scheme} s3cret"})
        assert response.status_code == 200, response.text


def test_serving_beyond_loopback_needs_an_admin_token(client):
    with pytest.raises(MnistError, match="needs an admin token for POST /reload"):
        client(host="0.0.0.0")


def test_the_openapi_document_names_the_bearer_scheme_only_with_a_token(client):
    plain = client().get("/openapi.json").json()
    assert "security" not in plain["paths"]["/reload"]["post"]
    assert "securitySchemes" not in plain.get("components", {})
    guarded = client(host="0.0.0.0", admin_token="s3cret").get("/openapi.json").json()
    assert guarded["paths"]["/reload"]["post"]["security"] == [{"HTTPBearer": []}]
    assert guarded["components"]["securitySchemes"]["HTTPBearer"]["scheme"] == "bearer"


def test_the_drawing_page_is_served(client):
    response = client().get("/")
    assert response.status_code == 200 and "<canvas" in response.text
