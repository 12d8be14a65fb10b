"""Where validation work runs: an event loop of its own, in its own thread.

pyHanko's AdES validation is an ``async`` API that does its CPU-heavy parts (PDF parsing,
hashing, signature and path checks) inline between its awaits on OCSP/CRL fetches. Run on
the server's loop it would stall every other request for the length of a validation; run
through ``asyncio.to_thread`` one call at a time it could not await its fetches. So the
engine owns a second loop in a daemon thread: requests hand it a coroutine factory and
await the result, the server's loop stays free, and the revocation cache
(:class:`~extensions.validates.revocation.RevocationCache`) and its HTTP session live on that
loop, shared by every request of the process.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable
from typing import TypeVar

from extensions.validates.revocation import RevocationCache
from extensions.validates.settings import ValidationSettings

T = TypeVar("T")


class ValidationEngine:
    def __init__(self, settings: ValidationSettings) -> None:
        self.settings = settings
        self.cache = RevocationCache(timeout=settings.revocation_timeout_seconds,
                                     default_seconds=settings.revocation_default_cache_seconds,
                                     max_seconds=settings.revocation_max_cache_seconds)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name="rssp-validation", daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` on the engine's loop; the caller's loop only waits."""
        assert self._loop is not None, "engine not started"

        async def wrapped() -> T:
            return await work()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapped(), self._loop))

    async def close(self) -> None:
        if self._loop is None:
            return
        await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(self.cache.close(), self._loop))
        self._loop.call_soon_threadsafe(self._loop.stop)
        assert self._thread is not None
        await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()
        self._loop = None
