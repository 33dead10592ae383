"""Dynamic micro-batching: requests that arrive together share one model call.

One worker task takes the first waiting request, then whatever else is already queued (up to
`max_images` images), waiting at most `max_wait` seconds for more when it has room, and runs
the model once, off the event loop, for all of them. A lone request is not delayed when
`max_wait` is 0; under load, the requests that arrive while the model runs form the next
batch. Each caller gets back exactly the rows of its own images.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import numpy as np

Predict = Callable[[np.ndarray], tuple[np.ndarray, Any]]
"""Images (N, 28, 28) -> (one row per image, whatever else the caller should hear)."""


@dataclass
class _Request:
    images: np.ndarray
    answer: asyncio.Future = field(repr=False)


class MicroBatcher:
    """Callers `await batcher(images)`; one worker task runs `predict` for what is queued."""

    def __init__(self, predict: Predict, max_images: int = 256, max_wait: float = 0.0):
        self.predict, self.max_images, self.max_wait = predict, max_images, max_wait
        self._queue: asyncio.Queue[_Request] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self.batches = 0  # model calls so far, for tests and metrics

    def start(self) -> None:
        self._worker = asyncio.get_running_loop().create_task(self._run())

    async def stop(self) -> None:
        if self._worker:
            self._worker.cancel()

    async def __call__(self, images: np.ndarray) -> tuple[np.ndarray, Any]:
        """This request's rows, and the `predict` extra of the batch it rode in."""
        answer = asyncio.get_running_loop().create_future()
        await self._queue.put(_Request(images, answer))
        return await answer

    async def _gather(self) -> list[_Request]:
        batch = [await self._queue.get()]
        size = len(batch[0].images)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_images:
            try:
                if self._queue.empty() and self.max_wait > 0:
                    left = deadline - asyncio.get_running_loop().time()
                    request = await asyncio.wait_for(self._queue.get(), max(left, 0))
                else:
                    request = self._queue.get_nowait()
            except (asyncio.QueueEmpty, TimeoutError):
                break
            batch.append(request)
            size += len(request.images)
        return batch

    async def _run(self) -> None:
        while True:
            batch = await self._gather()
            try:
                images = np.concatenate([r.images for r in batch])
                rows, extra = await asyncio.to_thread(self.predict, images)
            except Exception as exc:  # every caller of the batch hears it
                for request in batch:
                    if not request.answer.done():
                        request.answer.set_exception(exc)
                continue
            self.batches += 1
            start = 0
            for request in batch:
                end = start + len(request.images)
                if not request.answer.done():  # a caller that went away
                    request.answer.set_result((rows[start:end], extra))
                start = end
