"""rssp.coalesce.Coalescer: the queue in front of the HSM, SQLite and verifier threads (one each per process)."""

from __future__ import annotations

import asyncio

import pytest

from rssp.coalesce import Coalescer, Outcome


class Recorder:
    """A run_batch that records its batches and holds each one until released."""

    def __init__(self) -> None:
        self.batches: list[list[int]] = []
        self.gate = asyncio.Event()

    async def run(self, items: list[int]) -> list[Outcome]:
        self.batches.append(items)
        await self.gate.wait()
        return [(False, ValueError(f"odd {i}")) if i % 2 else (True, i * 10) for i in items]


async def test_callers_queued_during_a_hop_share_the_next_one() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.run)
    tasks = [asyncio.create_task(coalescer.submit(0))]
    await asyncio.sleep(0.01)  # the first hop is out, holding only item 0
    tasks += [asyncio.create_task(coalescer.submit(i)) for i in (2, 3, 4)]
    await asyncio.sleep(0.01)
    rec.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert rec.batches == [[0], [2, 3, 4]]
    assert results[:2] == [0, 20] and results[3] == 40
    assert isinstance(results[2], ValueError) and str(results[2]) == "odd 3"  # only its own caller fails


async def test_max_batch_splits_a_queue() -> None:
    rec = Recorder()
    rec.gate.set()
    coalescer: Coalescer[int, int] = Coalescer(rec.run, max_batch=2)
    assert await asyncio.gather(*(coalescer.submit(i) for i in (0, 2, 4, 6, 8))) == [0, 20, 40, 60, 80]
    assert rec.batches == [[0, 2], [4, 6], [8]]


async def test_a_failing_batch_fails_each_of_its_callers_and_the_next_batch_runs() -> None:
    calls = []

    async def run(items: list[int]) -> list[Outcome]:
        calls.append(items)
        if len(calls) == 1:
            raise RuntimeError("commit failed")
        return [(True, i) for i in items]

    coalescer: Coalescer[int, int] = Coalescer(run)
    first = await asyncio.gather(coalescer.submit(1), coalescer.submit(2), return_exceptions=True)
    assert all(isinstance(r, RuntimeError) for r in first)
    assert await coalescer.submit(3) == 3


async def test_a_cancelled_caller_leaves_the_others_alone_and_drained_waits() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.run)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in (0, 2, 4)]
    await asyncio.sleep(0.01)
    tasks[1].cancel()
    drained = asyncio.create_task(coalescer.drained())
    await asyncio.sleep(0.01)
    assert not drained.done()  # the batch is still out
    rec.gate.set()
    await drained
    assert tasks[0].result() == 0 and tasks[2].result() == 40
    with pytest.raises(asyncio.CancelledError):
        tasks[1].result()


async def test_cancelling_the_flush_cancels_every_waiting_caller() -> None:
    rec = Recorder()
    coalescer: Coalescer[int, int] = Coalescer(rec.run)
    tasks = [asyncio.create_task(coalescer.submit(i)) for i in (0, 2)]
    await asyncio.sleep(0.01)
    tasks.append(asyncio.create_task(coalescer.submit(4)))  # queued behind the held hop
    await asyncio.sleep(0.01)
    assert coalescer._task is not None
    coalescer._task.cancel()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert all(isinstance(r, asyncio.CancelledError) for r in results)
    rec.gate.set()
    assert await coalescer.submit(6) == 60  # and it works afterwards
