"""Coalescing work for a dedicated thread: what arrives while one hop is out goes in the next.

The HSM thread, the SQLite thread and the verifier thread are each reached by a hop off the
event loop, and a hop costs about as much as the work it carries (tens of µs of hand-off and
wake-up on each side). Under load, the callers that queue up while a hop is out therefore
share the next one: one hop per batch instead of one per caller. Nothing ever waits for a
batch to fill, so an idle service keeps its latency. Each caller still gets its own result or
its own exception.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any, Generic, TypeVar

Item = TypeVar("Item")
Result = TypeVar("Result")
Outcome = tuple[bool, Any]  # (succeeded, result or exception), one per item of a batch


class Coalescer(Generic[Item, Result]):
    """Queues items and hands them, in arrival order, to ``run_batch`` in batches.

    ``run_batch`` gets the queued items and returns one :data:`Outcome` per item; one batch is
    in flight at a time, so batches never overlap. If ``run_batch`` itself raises, every item
    of that batch fails with the exception.
    """

    def __init__(self, run_batch: Callable[[list[Item]], Awaitable[list[Outcome]]],
                 max_batch: int | None = None) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._pending: list[tuple[Item, asyncio.Future[Any]]] = []  # event-loop side only
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    async def submit(self, item: Item) -> Result:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[Result] = loop.create_future()
        self._pending.append((item, future))
        if self._task is None:
            self._task = loop.create_task(self._flush())
        return await future

    async def drained(self) -> None:
        """Return once everything queued so far has been run (e.g. before closing the thread)."""
        if self._task is not None:
            await asyncio.wait({self._task})

    async def _flush(self) -> None:
        batch: list[tuple[Item, asyncio.Future[Any]]] = []
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    outcomes = await self._run_batch([item for item, _ in batch])
                except Exception as exc:  # the batch as a whole failed (commit, lock, hop): all fail
                    outcomes = [(False, exc)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():  # its caller was cancelled meanwhile
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
                batch = []
        except asyncio.CancelledError:
            for _, future in batch + self._pending:
                future.cancel()
            self._pending = []
            raise
        finally:
            self._task = None
