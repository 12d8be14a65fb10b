"""An event loop of its own, in its own thread, for async libraries that compute between awaits.

pyHanko's signing and validation APIs are ``async`` but do their CPU-heavy parts (PDF parsing
and writing, hashing, CMS building, path checks) inline between their awaits on OCSP, CRL and
TSA round trips. Run on the server's loop they would stall every other request for the length
of a document; run with ``asyncio.to_thread`` they could not await their fetches. So the work
runs on a second loop in a daemon thread: the server's loop only awaits the result.

Work on this loop that needs something owned by the server's loop (the HSM queue, the
database, the TSA pool) calls :meth:`LoopThread.on_main`, which runs it there and awaits it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


class LoopThread:
    def __init__(self, name: str) -> None:
        self.name = name
        self._loop: asyncio.AbstractEventLoop | None = None
        self._main: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Start the thread; call from the server's loop, which :meth:`on_main` then targets."""
        self._main = asyncio.get_running_loop()
        self._loop = asyncio.new_event_loop()
        self._thread = threading.Thread(target=self._loop.run_forever, name=self.name, daemon=True)
        self._thread.start()

    async def run(self, work: Callable[[], Awaitable[T]]) -> T:
        """Run ``work()`` on this thread's loop; the caller's loop only waits.

        A caller cancelled meanwhile cancels the work too (``wrap_future`` passes it on).
        """
        loop = self._require(self._loop)

        async def wrapped() -> T:
            return await work()

        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(wrapped(), loop))

    async def on_main(self, coro: Coroutine[Any, Any, T]) -> T:
        """From this thread's loop: run ``coro`` on the server's loop and await its result."""
        main = self._require(self._main)
        return await asyncio.wrap_future(asyncio.run_coroutine_threadsafe(coro, main))

    async def close(self, cleanup: Callable[[], Awaitable[None]] | None = None) -> None:
        """Run ``cleanup()`` on this loop (e.g. close its HTTP sessions), then stop the thread."""
        if self._loop is None:
            return
        if cleanup is not None:
            await self.run(cleanup)
        self._loop.call_soon_threadsafe(self._loop.stop)
        if self._thread is not None:
            await asyncio.to_thread(self._thread.join, 10)
        self._loop.close()
        self._loop = None

    def _require(self, loop: asyncio.AbstractEventLoop | None) -> asyncio.AbstractEventLoop:
        if loop is None:
            raise RuntimeError(f"{self.name} is not started")
        return loop
