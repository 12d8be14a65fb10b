"""Where validation work runs: a few threads of its own, each with its own event loop.

pyHanko's AdES validation is an ``async`` API that does its CPU-heavy parts (PDF parsing,
difference analysis, hashing, signature and path checks) inline between its awaits on
OCSP/CRL fetches. Run on the server's loop it would stall every other request; run on one
shared validation loop, one heavy document stalls every other validation until its next
await (three PDFs with thousands of updates held all validations for a minute). So each
validation gets a *lane* of its own: a thread with an event loop and an HTTP session
(:class:`~.outbound.Outbound`) bound to that loop. ``concurrent_validations`` lanes run at
once; the interpreter switches between their threads every few milliseconds, so a light
validation finishes while a heavy one goes on, and the server's loop only awaits results.
Who gets a lane, and who waits or is refused, is :class:`~.gate.Gate`'s decision.

The revocation cache (:class:`~.revocation.RevocationCache`) is shared by the lanes of one
process; the fetch policy (:class:`~.fetchpolicy.FetchPolicy`) is the same for all.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import TypeVar

from extensions.validates.fetchpolicy import FetchPolicy
from extensions.validates.gate import Gate
from extensions.validates.outbound import FetchBudget, Outbound
from extensions.validates.request import Request
from extensions.validates.revocation import FetchLog, RevocationCache
from extensions.validates.settings import ValidationSettings

T = TypeVar("T")


class Lane:
    """One validation thread: its event loop and the HTTP session of that loop."""

    def __init__(self, index: int, settings: ValidationSettings, policy: FetchPolicy) -> None:
        self.loop = asyncio.new_event_loop()
        self.net = Outbound(settings, policy)
        self.thread = threading.Thread(target=self.loop.run_forever, name=f"rssp-validation-{index}", daemon=True)

    async def close(self) -> None:
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.net.close(), self.loop))
        self.loop.call_soon_threadsafe(self.loop.stop)
        await asyncio.to_thread(self.thread.join, 10)
        self.loop.close()


class ValidationEngine:
    def __init__(self, settings: ValidationSettings) -> None:
        self.settings = settings
        self.policy = FetchPolicy.from_settings(settings)
        self.cache = RevocationCache(default_seconds=settings.revocation_default_cache_seconds,
                                     max_seconds=settings.revocation_max_cache_seconds,
                                     max_entries=settings.revocation_cache_entries)
        self.gate = Gate(running=settings.concurrent_validations, waiting=settings.queued_validations,
                         per_caller=settings.validations_per_caller)
        self._lanes: list[Lane] = []
        self._idle: list[Lane] = []

    def start(self) -> None:
        self._lanes = [Lane(i, self.settings, self.policy) for i in range(self.settings.concurrent_validations)]
        for lane in self._lanes:
            lane.thread.start()
        self._idle = list(self._lanes)

    def request(self, lane: Lane, moment: datetime | None) -> Request:
        """A validation request's context, for work running on ``lane``."""
        return Request(self.settings, self.cache, lane.net, moment, FetchLog(FetchBudget(self.settings)))

    async def run(self, caller: str, work: Callable[[Lane], Awaitable[T]]) -> T:
        """Run ``work(lane)`` on a free lane once the gate admits ``caller`` (:class:`~.gate.Busy` if not).

        The work is never cancelled (it is bounded: the document caps and the fetch budget),
        so the lane is handed back when the work has really ended on its thread, even if
        the client stopped waiting: an abandoned validation holds its lane until then.
        """
        if not self._lanes:
            raise RuntimeError("the validation engine was not started")
        await self.gate.acquire(caller)
        lane = self._idle.pop()
        server = asyncio.get_running_loop()

        async def on_lane() -> T:
            try:
                return await work(lane)
            finally:
                server.call_soon_threadsafe(self._finish, caller, lane)

        future = asyncio.wrap_future(asyncio.run_coroutine_threadsafe(on_lane(), lane.loop))
        future.add_done_callback(lambda done: done.cancelled() or done.exception())  # retrieved if abandoned
        return await asyncio.shield(future)

    def _finish(self, caller: str, lane: Lane) -> None:
        self._idle.append(lane)
        self.gate.release(caller)

    async def close(self) -> None:
        lanes, self._lanes, self._idle = self._lanes, [], []
        for lane in lanes:
            await lane.close()
