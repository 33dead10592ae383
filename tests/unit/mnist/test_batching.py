"""Micro-batching on its own: concurrent callers share model calls and get their own rows."""

import asyncio
import time

import numpy as np
import pytest

from mnist.batching import MicroBatcher


def _run(batcher: MicroBatcher, inputs: list[np.ndarray]) -> list:
    async def main():
        batcher.start()
        try:
            return await asyncio.gather(*(batcher(x) for x in inputs), return_exceptions=True)
        finally:
            await batcher.stop()

    return asyncio.run(main())


def _images(sizes: list[int]) -> list[np.ndarray]:
    return [np.full((n, 28, 28), i, np.float32) for i, n in enumerate(sizes)]


def test_concurrent_callers_share_calls_and_get_their_own_rows():
    calls = []

    def predict(x):  # a slow model: one row per image, its pixel sum
        calls.append(len(x))
        time.sleep(0.01)
        return x.reshape(len(x), -1).sum(axis=1), len(calls)

    inputs = _images([1, 2, 1, 3] * 25)
    results = _run(MicroBatcher(predict, max_images=16), inputs)
    for x, (rows, call) in zip(inputs, results, strict=True):
        assert rows.tolist() == [x[0].sum()] * len(x) and 1 <= call <= len(calls)
    assert len(calls) < len(inputs) / 4  # shared
    assert max(calls) <= 16 + 3  # bounded: at most one request past the limit
    assert sum(calls) == sum(len(x) for x in inputs)


def test_a_failed_call_reaches_each_of_its_callers_and_the_next_call_works():
    calls = []

    def predict(x):  # fails its first call; then one row per image, its first pixel
        calls.append(len(x))
        if len(calls) == 1:
            raise RuntimeError("model broke")
        return x.reshape(len(x), -1)[:, :1], None

    async def main():
        batcher = MicroBatcher(predict, max_wait=0.05)  # the three callers share one call
        batcher.start()
        first = await asyncio.gather(
            *(batcher(x) for x in _images([1, 2, 1])), return_exceptions=True
        )
        later = await asyncio.gather(*(batcher(x) for x in _images([2, 1, 3])))
        await batcher.stop()
        return first, later

    first, later = asyncio.run(main())
    assert calls[0] == 4  # the failed call held every caller's images
    assert len(first) == 3 and all(
        isinstance(r, RuntimeError) and str(r) == "model broke" for r in first
    )
    assert [rows.tolist() for rows, _ in later] == [[[0.0]] * 2, [[1.0]], [[2.0]] * 3]


@pytest.mark.parametrize(("wait", "most_calls"), [(0.0, 20), (0.05, 2)])
def test_the_wait_gathers_requests_that_arrive_shortly_after(wait, most_calls):
    calls = []

    def predict(x):
        calls.append(len(x))
        return np.zeros(len(x)), None

    async def main():
        batcher = MicroBatcher(predict, max_images=100, max_wait=wait)
        batcher.start()

        async def late(i):
            await asyncio.sleep(0.002 * i)
            return await batcher(np.zeros((1, 28, 28), np.float32))

        await asyncio.gather(*(late(i) for i in range(20)))
        await batcher.stop()

    asyncio.run(main())
    assert sum(calls) == 20 and len(calls) <= most_calls
