"""The model in service: `ModelHolder` resolves the reference (an alias to the exact version it
points at now), loads that version as a runner (`mnist.tracking.load_runner`: its ONNX copy
with ONNX Runtime, or Keras, by the `runtime` setting), and swaps in a new one, loaded the same
way, when the reference moves, either from the poller (`poll`) or from `POST /reload`. A failed
refresh keeps the old model serving.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import sys
import threading
from typing import TYPE_CHECKING

from starlette.concurrency import run_in_threadpool

from app.schemas import ModelInfo
from app.serve.errors import RequestError
from mnist import registry, tracking
from mnist.errors import MnistError, first_line
from mnist.references import ModelRef
from mnist.settings import RuntimeChoice

if TYPE_CHECKING:
    from mnist.tracking import Runner

log = logging.getLogger(__name__)


def _settle() -> None:
    """Collect what a model swap left behind once, then freeze every live object (MLflow, and
    TensorFlow with a Keras model: over a million) out of the garbage collector's sight.
    Otherwise each full collection walks them all for about 0.3 s, holding every request in
    flight: 2% of requests at 64 clients waited that long (bench/serve_latency.py). An old
    model that a request still held at the swap stays frozen, in memory, until the next swap."""
    gc.unfreeze()
    gc.collect()
    gc.freeze()


class ModelHolder:
    """The model in service; `refresh` swaps in a new version when the reference moves."""

    def __init__(self, ref: str, runtime: RuntimeChoice = "auto", onnx_threads: int = 1):
        self.ref, self.runtime, self.onnx_threads = ref, runtime, onnx_threads
        self._lock = threading.Lock()
        self._refreshing = threading.Lock()  # the poller and /reload, one at a time
        self._current: tuple[Runner, ModelInfo] | None = None
        self.last_error: str | None = None  # of the last refresh; the old model keeps serving

    @property
    def loaded(self) -> bool:
        return self._current is not None

    def _resolve(self) -> ModelInfo:
        """Where the reference points now: a registered version (an alias looked up in the
        registry), or the reference itself for anything else (a path, `runs:/`, ...)."""
        ref = ModelRef.parse(self.ref)
        if not ref.registered or ref.name is None:
            return ModelInfo(uri=self.ref)
        v = registry.get(ref.name, ref.version, ref.alias)
        return ModelInfo(
            uri=str(ModelRef.by_version(ref.name, v.version)),
            name=ref.name,
            version=v.version,
            alias=ref.alias,
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
            model = tracking.load_runner(info.uri, self.runtime, self.onnx_threads or None)
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

    def current(self) -> tuple[Runner, ModelInfo]:
        with self._lock:
            if self._current is None:
                raise RequestError("no model loaded", 503)
            return self._current


def tensorflow_loaded() -> bool:
    """Whether this process has imported TensorFlow (an ONNX runner never does)."""
    return "tensorflow" in sys.modules


async def poll(holder: ModelHolder, seconds: float) -> None:
    """Refresh `holder` every `seconds`, for ever; a failure keeps the loaded version serving
    (and `/healthz` says why)."""
    while True:
        await asyncio.sleep(seconds)
        try:
            await run_in_threadpool(holder.refresh)
        except MnistError as exc:
            log.warning("cannot refresh %s: %s", holder.ref, exc)
