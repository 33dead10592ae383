"""An in-process `mnist serve` app around a stand-in model, with Starlette's TestClient: the
routes, parsers and guards without MLflow, TensorFlow or a server process."""

from __future__ import annotations

from collections.abc import Callable, Iterator

import numpy as np
import pytest
from fastapi.testclient import TestClient

from app.schemas import ModelInfo
from app.serve import create_app
from mnist.settings import ServeSettings

INFO = ModelInfo(uri="stand-in")


class DigitOfFirstPixel:
    """A stand-in model: each image's answer is the digit of its first pixel (mod 10), sure."""

    def __init__(self) -> None:
        self.calls: list[int] = []

    runtime = "onnx"

    def probabilities(self, x: np.ndarray) -> np.ndarray:
        self.calls.append(len(x))
        out = np.zeros((len(x), 10), np.float32)
        out[np.arange(len(x)), x.reshape(len(x), -1)[:, 0].astype(int) % 10] = 1
        return out


Client = Callable[..., TestClient]


@pytest.fixture
def client(tmp_path) -> Iterator[Client]:
    """`client(**settings)`: a TestClient of an app serving `DigitOfFirstPixel`, its feedback
    and prediction log in a SQLite store under tmp_path (or at `datastore=URL`);
    `client.model` is the stand-in. Leaving the client runs the app's shutdown."""
    stack = []

    def make(datastore: str | None = None, **settings) -> TestClient:
        options = {"model": "stand-in", "poll_seconds": 0, **settings}
        datastore = datastore or f"sqlite:///{tmp_path / 'feedback.db'}"
        app = create_app(ServeSettings(**options), datastore)
        model = DigitOfFirstPixel()
        app.state.holder._current = (model, INFO)  # loaded: the lifespan loads nothing
        test_client = TestClient(app)
        test_client.__enter__()
        stack.append(test_client)
        test_client.model = model  # type: ignore[attr-defined]
        return test_client

    yield make
    for test_client in stack:
        test_client.__exit__(None, None, None)
