"""`mnist serve` and `mlflow models serve` as real servers on 127.0.0.1, and the drawing page
in a real headless Chromium."""

import io
import os
import shutil
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import httpx
import mlflow
import numpy as np
import pytest
from PIL import Image

from mnist import registry
from tests.conftest import ROOT
from tests.servers import free_port, start_server, stop_server

pytestmark = pytest.mark.slow  # real servers and processes: the full suite only

BIN = Path(sys.executable).parent
NAME = "serve-test"
SCREENSHOTS = Path(os.environ.get("MNIST_SCREENSHOT_DIR", ROOT / "build" / "screenshots"))


def _register_champion(name: str, model_uri: str) -> None:
    mlflow.register_model(model_uri, name)
    registry.promote("1", name)


FEEDBACK_TOKEN = "s3cret-feedback-token"
TRUSTED = {"Authorization": f"Bearer {FEEDBACK_TOKEN}"}


def _serve(
    name: str, log: Path, *options: str, datastore: str | None = None, env: dict | None = None
):
    """`mnist serve` of `name`'s champion; its feedback and prediction log go to `datastore`,
    else to a store beside the log."""
    port = free_port()
    proc = start_server(
        [
            str(BIN / "mnist"),
            "serve",
            "--model",
            f"models:/{name}@champion",
            "--port",
            str(port),
            "--poll-seconds",
            "1",
            "--max-images",
            "100",
            "--max-bytes",
            "2000000",
            "--datastore",
            datastore or f"sqlite:///{log.parent / 'feedback.db'}",
            "--feedback-per-minute",
            "1000",
            *options,
        ],
        f"http://127.0.0.1:{port}/healthz",
        log,
        env or {},
    )
    return proc, f"http://127.0.0.1:{port}"


@pytest.fixture(scope="module")
def champion(full_run):
    """The suite's full-MNIST model, registered as `serve-test` v1 and made champion."""
    _, result = full_run
    _register_champion(NAME, result.model_uri)
    return result


@pytest.fixture(scope="module")
def served(champion, workdir, tmp_path_factory):
    """The server (with a feedback token), and the URL of the store its feedback and
    prediction log go to."""
    root = tmp_path_factory.mktemp("serve")
    proc, url = _serve(NAME, root / "serve.log", env={"MNIST_SERVE_FEEDBACK_TOKEN": FEEDBACK_TOKEN})
    yield url, f"sqlite:///{root / 'feedback.db'}"
    stop_server(proc)


@pytest.fixture(scope="module")
def api(served):
    return served[0]


def _png(pixels: np.ndarray, scale: int = 1) -> bytes:
    img = Image.fromarray(pixels.astype(np.uint8))
    if scale > 1:
        img = img.resize((28 * scale, 28 * scale), Image.Resampling.BILINEAR)
    out = io.BytesIO()
    img.save(out, format="PNG")
    return out.getvalue()


def test_predicts_real_test_images_as_json(api, champion, mnist_data):
    images, labels = mnist_data.test.images[:100], mnist_data.test.labels[:100]
    for pixels in (images.tolist(), images.reshape(100, 784).tolist()):
        body = httpx.post(f"{api}/predict", json={"pixels": pixels}).json()
        digits = [p["digit"] for p in body["predictions"]]
        assert np.mean(np.array(digits) == labels) >= 0.98
        assert all(abs(sum(p["probabilities"]) - 1) < 1e-3 for p in body["predictions"])
        assert body["model"]["name"] == NAME and body["model"]["version"] == "1"
        assert body["model"]["alias"] == "champion"
    one = httpx.post(f"{api}/predict", json={"pixels": images[0].tolist()}).json()
    assert [p["digit"] for p in one["predictions"]] == [labels[0]]


def test_predicts_uploaded_images(api, mnist_data):
    images, labels = mnist_data.test.images[:10], mnist_data.test.labels[:10]
    raw = [
        httpx.post(
            f"{api}/predict", content=_png(im, scale=10), headers={"Content-Type": "image/png"}
        ).json()
        for im in images
    ]
    assert sum(r["predictions"][0]["digit"] == t for r, t in zip(raw, labels, strict=True)) >= 9
    form = httpx.post(f"{api}/predict", files={"file": ("d.png", _png(images[0]), "image/png")})
    assert form.json()["predictions"][0]["digit"] == labels[0]


def test_model_and_health(api, champion):
    info = httpx.get(f"{api}/model").json()
    assert info["name"] == NAME and info["version"] == "1" and info["alias"] == "champion"
    assert info["run_id"] == champion.run_id
    assert info["test_accuracy"] == pytest.approx(champion.test_accuracy, abs=1e-4)
    health = httpx.get(f"{api}/healthz").json()
    assert health.pop("prediction_log")["on"] is True
    assert health == {
        "status": "ok",
        "version": "1",
        "refresh_error": None,
        "feedback": True,
        "runtime": "onnx",  # the version has an ONNX copy: TensorFlow never loads
        "tensorflow_loaded": False,
    }


def _zeros(n):
    return np.zeros((n, 28, 28)).tolist()


BAD = [
    (
        "NaN",
        dict(
            content='{"pixels": [' + ",".join(["NaN"] + ["0"] * 783) + "]}",
            headers={"Content-Type": "application/json"},
        ),
        422,
        "1 NaN pixel(s)",
    ),
    (
        "Infinity",
        dict(
            content='{"pixels": [' + ",".join(["Infinity"] + ["0"] * 783) + "]}",
            headers={"Content-Type": "application/json"},
        ),
        422,
        "+Inf pixel(s)",
    ),
    ("out of range", dict(json={"pixels": [[300.0] * 784]}), 422, "outside [0.0, 255.0]"),
    (
        "just past 255",
        dict(json={"pixels": [[255.00000000000003] * 784]}),
        422,
        "outside [0.0, 255.0]",
    ),  # rounds to 255 in float32: found by schemathesis
    (
        "wrong shape",
        dict(json={"pixels": np.zeros((2, 27, 27)).tolist()}),
        422,
        "shape (2, 27, 27)",
    ),
    ("non-numeric", dict(json={"pixels": [["a"] * 784]}), 422, "regular array of numbers"),
    (
        "past float range",
        dict(json={"pixels": [[10**400] + [0] * 783]}),
        422,
        "regular array of numbers",
    ),
    ("booleans", dict(json={"pixels": [[False] * 784]}), 422, "not true or false"),
    ("ragged", dict(json={"pixels": [[0] * 784, [0] * 10]}), 422, "regular array of numbers"),
    ("no pixels key", dict(json={"image": []}), 422, '"pixels"'),
    ("empty body", dict(content=b"", headers={"Content-Type": "application/json"}), 400, "empty"),
    (
        "broken JSON",
        dict(content=b"{pixels", headers={"Content-Type": "application/json"}),
        400,
        "not valid JSON",
    ),
    ("too many images", dict(json={"pixels": _zeros(101)}), 413, "101 images exceed the limit"),
    (
        "too many bytes",
        dict(content=b"0" * 2_100_000, headers={"Content-Type": "application/json"}),
        413,
        "exceeds the 2000000-byte limit",
    ),
    (
        "not an image",
        dict(content=b"hello", headers={"Content-Type": "image/png"}),
        422,
        "not a readable PNG or JPEG",
    ),
    (
        "corrupt PNG",
        dict(content=b"\x89PNG\r\n\x1a\n" + b"\x00" * 40, headers={"Content-Type": "image/png"}),
        422,
        "not a readable PNG",
    ),
    (
        "blank image",
        dict(content=_png(np.zeros((28, 28)), 10), headers={"Content-Type": "image/png"}),
        422,
        "blank",
    ),
    (
        "wrong type",
        dict(content=b"1,2,3", headers={"Content-Type": "text/csv"}),
        415,
        "unsupported content type",
    ),
]


@pytest.mark.parametrize(("what", "request_", "status", "message"), BAD, ids=[b[0] for b in BAD])
def test_bad_requests_get_a_clear_4xx(api, what, request_, status, message):
    response = httpx.post(f"{api}/predict", **request_)
    assert response.status_code == status, response.text
    assert message in response.json()["error"]
    assert " at 0x" not in response.json()["error"]  # no Python object's repr reaches a client


def test_still_serving_after_bad_requests(api, mnist_data):
    for _, request_, _, _ in BAD:
        httpx.post(f"{api}/predict", **request_)
    assert httpx.get(f"{api}/healthz").json()["status"] == "ok"
    body = httpx.post(f"{api}/predict", json={"pixels": mnist_data.test.images[:3].tolist()})
    assert body.status_code == 200


def test_champion_change_is_picked_up_without_restart(full_run, workdir, mnist_data, tmp_path):
    """Its own registered model and two servers: one polls the alias every second, the other
    (`--poll-seconds 0`) looks it up only on POST /reload. Moving the champion touches no
    other test; the second server shows /reload's answer without racing a poller."""
    name, (_, result) = "serve-move-test", full_run
    _register_champion(name, result.model_uri)
    polling, api = _serve(name, tmp_path / "polling.log")
    manual, admin = _serve(name, tmp_path / "manual.log", "--poll-seconds", "0")
    try:
        assert httpx.get(f"{api}/model").json()["version"] == "1"
        mlflow.register_model(result.model_uri, name)
        registry.promote("2", name)
        deadline = time.monotonic() + 30
        while httpx.get(f"{api}/model").json()["version"] != "2" and time.monotonic() < deadline:
            time.sleep(0.5)
        assert httpx.get(f"{api}/model").json()["version"] == "2"
        body = httpx.post(f"{api}/predict", json={"pixels": mnist_data.test.images[:2].tolist()})
        assert body.json()["model"]["version"] == "2"
        assert httpx.get(f"{admin}/model").json()["version"] == "1"  # no poller there
        reload = httpx.post(f"{admin}/reload").json()
        assert reload["changed"] is True and reload["model"]["version"] == "2"
        registry.rollback(name)
        reload = httpx.post(f"{admin}/reload").json()
        assert reload["changed"] is True and reload["model"]["version"] == "1"
        assert httpx.post(f"{admin}/reload").json()["changed"] is False
    finally:
        stop_server(polling)
        stop_server(manual)


def test_mlflow_models_serve_answers_raw_pixels(champion, workdir, mnist_data, tmp_path):
    port = free_port()
    proc = start_server(
        [
            str(BIN / "mlflow"),
            "models",
            "serve",
            "-m",
            f"models:/{NAME}/1",
            "--env-manager",
            "local",
            "-h",
            "127.0.0.1",
            "-p",
            str(port),
        ],
        f"http://127.0.0.1:{port}/ping",
        tmp_path / "mlflow-serve.log",
        {},
    )
    try:
        images, labels = mnist_data.test.images[:50], mnist_data.test.labels[:50]
        payload = {"inputs": images.astype(float).tolist()}
        response = httpx.post(f"http://127.0.0.1:{port}/invocations", json=payload, timeout=60)
        assert response.status_code == 200, response.text
        predicted = np.asarray(response.json()["predictions"]).argmax(axis=1)
        assert np.mean(predicted == labels) >= 0.98
    finally:
        stop_server(proc)


CHROMIUM_ARGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
    "--no-first-run",
]


def _chromium() -> str:
    path = os.environ.get("MNIST_CHROMIUM") or shutil.which("chromium")
    assert path, "the browser test needs Debian's chromium (make test installs it)"
    return path


def _strokes(image: np.ndarray, scale: int = 10) -> list[tuple[float, float, float, float]]:
    """Horizontal pen strokes along each row's runs of ink: the digit, redrawn by hand."""
    out = []
    for row in range(image.shape[0]):
        ink = np.flatnonzero(image[row] > 100)
        if not len(ink):
            continue
        runs = np.split(ink, np.flatnonzero(np.diff(ink) > 1) + 1)
        y = row * scale + scale / 2
        out += [(r[0] * scale + scale / 2, y, r[-1] * scale + scale / 2, y) for r in runs]
    return out


def _draw(page, image: np.ndarray) -> None:
    box = page.locator("#pad").bounding_box()
    for x0, y0, x1, y1 in _strokes(image):
        page.mouse.move(box["x"] + x0, box["y"] + y0)
        page.mouse.down()
        page.mouse.move(box["x"] + x1, box["y"] + y1, steps=2)
        page.mouse.up()


@pytest.mark.parametrize("index", [0, 1, 3])  # a 7, a 2 and a 0 from the test set
def test_drawing_page_predicts_a_drawn_digit(api, mnist_data, index):
    from playwright.sync_api import sync_playwright

    image, label = mnist_data.test.images[index], int(mnist_data.test.labels[index])
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 760, "height": 480})
        page.goto(api + "/")
        _draw(page, image)
        page.click("#predict")
        page.wait_for_function("document.getElementById('digit').textContent !== ''")
        shown = page.locator("#digit").inner_text()
        bars = page.locator(".bar").count()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / f"draw-{index}-digit-{label}.png"))
        page.click("#clear")
        cleared = page.locator("#digit").inner_text()
        browser.close()
    assert shown == str(label)
    assert bars == 10 and cleared == ""


BAD_FEEDBACK = [
    ("label 12", dict(json={"pixels": [[9] * 784], "label": 12}), 422, "label must be a digit 0-9"),
    ("label as text", dict(json={"pixels": [[9] * 784], "label": "3"}), 422, "got '3'"),
    ("no label", dict(json={"pixels": [[9] * 784]}), 422, '"pixels" and "label"'),
    ("blank", dict(json={"pixels": [[0] * 784], "label": 3}), 422, "blank"),
    (
        "NaN",
        dict(
            content=b'{"pixels": [' + b", ".join([b"NaN"] + [b"9"] * 783) + b'], "label": 3}',
            headers={"Content-Type": "application/json"},
        ),
        422,
        "1 NaN pixel(s)",
    ),
    ("wrong shape", dict(json={"pixels": [[9] * 27] * 28, "label": 3}), 422, "shape (28, 27)"),
    ("two images", dict(json={"pixels": [[9] * 784] * 2, "label": 3}), 422, "one image, got 2"),
    (
        "oversized",
        dict(content=b"0" * 2_100_000, headers={"Content-Type": "application/json"}),
        413,
        "exceeds the 2000000-byte limit",
    ),
    (
        "file without a label",
        dict(files={"file": ("d.png", b"x", "image/png")}),
        422,
        '"label" field',
    ),
    ("raw image", dict(content=b"x", headers={"Content-Type": "image/png"}), 415, "multipart"),
]


def test_feedback_is_stored_before_the_answer_and_bad_samples_are_not(served, mnist_data):
    from mnist import datastore
    from mnist.datastore import Store

    api, url = served
    store, image = Store(url), mnist_data.test.images[0]
    stored_before = store.count()
    for what, request_, status, message in BAD_FEEDBACK:
        response = httpx.post(f"{api}/feedback", **request_)
        assert response.status_code == status, (what, response.text)
        assert message in response.json()["error"], what
    assert store.count() == stored_before  # nothing of a refused sample is kept
    body = {"pixels": image.tolist(), "label": 7}
    good = httpx.post(f"{api}/feedback", json=body, headers=TRUSTED)
    assert good.status_code == 201, good.text
    upload = httpx.post(
        f"{api}/feedback",
        data={"label": "7"},
        files={"file": ("d.png", _png(image, 10), "image/png")},
        headers=TRUSTED,
    )
    assert upload.status_code == 201, upload.text
    assert good.json()["review"] == upload.json()["review"] == "trusted"
    anonymous = httpx.post(f"{api}/feedback", json={"pixels": image.tolist(), "label": 1})
    assert anonymous.status_code == 201 and anonymous.json()["review"] == "pending"
    wrong = httpx.post(f"{api}/feedback", json=body, headers={"Authorization": "Bearer no"})
    assert wrong.status_code == 401, wrong.text
    assert store.count() == stored_before + 3  # committed before the 201 was sent
    snapshot = store.snapshot()
    stored = {
        datastore.sample_digest(p, int(y))
        for split in (snapshot.train, snapshot.holdout)
        for p, y in zip(split.images, split.labels, strict=True)
    }
    assert datastore.sample_digest(image, 7) in stored  # the very pixels, with their label
    assert datastore.sample_digest(image, 1) not in stored  # pending: trains on nothing yet


def test_two_servers_at_once_lose_no_feedback(served, champion, mnist_data, tmp_path):
    """A second `mnist serve` on the same store; 200 samples from 16 threads to both."""
    from mnist.datastore import Store

    api, url = served
    proc, other = _serve(NAME, tmp_path / "serve.log", datastore=url)
    try:
        stored_before = Store(url).count()
        images, labels = mnist_data.test.images[:200], mnist_data.test.labels[:200]

        def send(i: int) -> int:
            target = (api, other)[i % 2]
            body = {"pixels": images[i].tolist(), "label": int(labels[i])}
            return httpx.post(f"{target}/feedback", json=body, timeout=60).json()["id"]

        with ThreadPoolExecutor(16) as pool:
            ids = list(pool.map(send, range(200)))
    finally:
        stop_server(proc)
    assert len(set(ids)) == 200
    assert Store(url).count() == stored_before + 200


def test_feedback_refuses_other_sites_and_floods(champion, workdir, mnist_data, tmp_path):
    proc, api = _serve(NAME, tmp_path / "serve.log", "--feedback-per-minute", "3")
    try:
        body = {"pixels": mnist_data.test.images[0].tolist(), "label": 7}
        other = httpx.post(f"{api}/feedback", json=body, headers={"Origin": "https://evil.example"})
        assert other.status_code == 403 and "cross-site" in other.json()["error"]
        same = {"Origin": api}  # the page itself
        assert [
            httpx.post(f"{api}/feedback", json=body, headers=same).status_code for _ in range(4)
        ] == [201, 201, 201, 429]
    finally:
        stop_server(proc)


def test_no_feedback_and_no_prediction_log_touch_no_store(champion, workdir, tmp_path):
    proc, api = _serve(NAME, tmp_path / "serve.log", "--no-feedback", "--no-prediction-log")
    try:
        response = httpx.post(f"{api}/feedback", json={"pixels": [[9] * 784], "label": 1})
        assert response.status_code == 404
        assert httpx.get(f"{api}/healthz").json()["feedback"] is False
        assert "/feedback" not in httpx.get(f"{api}/openapi.json").json()["paths"]
        answer = httpx.post(f"{api}/predict", json={"pixels": [[9] * 784]}).json()
        assert answer["predictions"][0]["id"] is None
        assert httpx.get(f"{api}/healthz").json()["prediction_log"]["on"] is False
    finally:
        stop_server(proc)
    assert not (tmp_path / "feedback.db").exists()


def _logged(url: str, ids: list[int], seconds: float = 10):
    """The log's window once every one of `ids` is in it (the writer flushes every 0.5 s)."""
    from mnist.datastore import PredictionLog, Store

    log, deadline = PredictionLog(Store(url)), time.monotonic() + seconds
    while True:
        window = log.window()
        if set(ids) <= set(window.ids.tolist()) or time.monotonic() > deadline:
            return window


def test_served_predictions_land_in_the_prediction_log(served, mnist_data):
    api, url = served
    images = mnist_data.test.images[:20]
    body = httpx.post(f"{api}/predict", json={"pixels": images.tolist()}).json()
    ids = [p["id"] for p in body["predictions"]]
    window = _logged(url, ids)
    found = dict(zip(window.ids.tolist(), window.digits.tolist(), strict=True))
    assert [found.get(i) for i in ids] == [p["digit"] for p in body["predictions"]]
    versions = dict(zip(window.ids.tolist(), window.versions.tolist(), strict=True))
    assert {versions[i] for i in ids} == {"1"}
    assert httpx.get(f"{api}/healthz").json()["prediction_log"]["written"] >= 20


def test_a_broken_log_store_costs_no_answer_and_no_slow_stop(
    champion, workdir, mnist_data, tmp_path
):
    """The store is a path under a plain file: every log write fails; predictions go on,
    /healthz and the server's log say what was dropped, and SIGTERM still stops it at once."""
    (tmp_path / "a-file").write_text("")
    broken = f"sqlite:///{tmp_path / 'a-file' / 'x.db'}"
    proc, api = _serve(NAME, tmp_path / "serve.log", "--no-feedback", datastore=broken)
    try:
        images, labels = mnist_data.test.images[:50], mnist_data.test.labels[:50]
        answers = [
            httpx.post(f"{api}/predict", json={"pixels": images[i].tolist()}) for i in range(50)
        ]
        assert [a.status_code for a in answers] == [200] * 50
        digits = [a.json()["predictions"][0]["digit"] for a in answers]
        assert np.mean(np.array(digits) == labels) >= 0.96
        deadline = time.monotonic() + 10
        while httpx.get(f"{api}/healthz").json()["prediction_log"]["dropped"] < 50:
            assert time.monotonic() < deadline, httpx.get(f"{api}/healthz").text
            time.sleep(0.2)
        health = httpx.get(f"{api}/healthz").json()
        assert health["status"] == "ok" and health["prediction_log"]["written"] == 0
        assert "cannot open the prediction log" in health["prediction_log"]["last_error"]
    finally:
        started = time.monotonic()
        stop_server(proc)
        stopped = time.monotonic() - started
    assert stopped < 5
    assert (
        "prediction(s) dropped (cannot open the prediction log"
        in (tmp_path / "serve.log").read_text()
    )


def test_the_page_sends_a_correction_as_feedback(served, mnist_data):
    """Draw a digit in Chromium, predict, and answer "wrong? it was: 4": the drawing is
    stored with that label."""
    from playwright.sync_api import sync_playwright
    from sqlalchemy import select

    from mnist.datastore import Sample, Store

    api, url = served
    store = Store(url)
    stored_before = store.count()
    image = mnist_data.test.images[1]
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=_chromium(), args=CHROMIUM_ARGS)
        page = browser.new_page(viewport={"width": 760, "height": 560})
        page.goto(api + "/")
        page.wait_for_function("feedback === true")
        _draw(page, image)
        page.click("#predict")
        page.wait_for_function("document.getElementById('digit').textContent !== ''")
        assert page.locator("#wrong").is_visible()
        page.click("#labels button[data-label='4']")
        shown = int(page.evaluate("predicted"))  # the id the page was answered, as text
        page.wait_for_function("document.getElementById('thanks').textContent !== ''")
        thanks = page.locator("#thanks").inner_text()
        SCREENSHOTS.mkdir(parents=True, exist_ok=True)
        page.screenshot(path=str(SCREENSHOTS / "feedback-sent.png"))
        browser.close()
    assert "(a 4)" in thanks and store.count() == stored_before + 1
    assert "until a person reviews it" in thanks  # the page has no token: pending
    with store.reader.connect() as connection:
        columns = (Sample.prediction_id, Sample.batch_id, Sample.label)
        named, batch_id, label = connection.execute(
            select(*columns).order_by(Sample.id.desc()).limit(1)
        ).one()
    # Today's anonymous batch, which an earlier test may have opened before a trusted one.
    [batch] = [b for b in store.batches() if b.id == batch_id]
    assert batch.source == "feedback-anonymous" and batch.review == "pending" and label == 4
    assert named == shown  # all 64 bits of the id survived the page's JavaScript
    assert shown in _logged(url, [shown]).ids.tolist()


def test_concurrent_requests_each_get_their_own_answer(api, mnist_data):
    """100 labelled digits sent one per request from 32 threads at once: micro-batching
    shares model calls, and every answer is that image's own."""
    images = mnist_data.test.images[:100]
    together = httpx.post(f"{api}/predict", json={"pixels": images.tolist()}).json()

    def one(i: int) -> dict:
        return httpx.post(f"{api}/predict", json={"pixels": images[i].tolist()}, timeout=60).json()

    with ThreadPoolExecutor(32) as pool:
        answers = list(pool.map(one, range(len(images))))
    for i, answer in enumerate(answers):
        (alone,) = answer["predictions"]
        expected = together["predictions"][i]
        assert alone["digit"] == expected["digit"], i
        np.testing.assert_allclose(alone["probabilities"], expected["probabilities"], atol=1e-4)
    digits = np.array([a["predictions"][0]["digit"] for a in answers])
    assert np.mean(digits == mnist_data.test.labels[:100]) >= 0.98
