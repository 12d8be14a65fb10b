"""A cache whose concurrent misses for one key share a single fetch ("single flight").

Why: some answers are expensive to get and the same for many requests at once — an OCSP
response or a CRL for the validation service, the validated chain of a TSA's certificate for
every token it signs. Without sharing, a burst of requests that all miss the cache would each
ask the network (a stampede on the responder, and N times the latency budget spent). Both
users had their own copy of this logic; this is the one implementation.

Rules, which the users rely on:

- a value is kept until the deadline ``expires(value)`` gives (a ``time.monotonic()`` time),
  and at most ``max_entries`` values are kept (the least recently used go first);
- a failure is never cached: the next asker fetches again, and the askers that were waiting for
  the failed fetch get its exception. When the fetching task is cancelled (a ``BaseException``
  that is not an ``Exception``), the waiters get ``abandoned()`` instead if it is given, so one
  request's cancellation does not cancel the others;
- askers may run on different threads and event loops (the validation service runs its
  validations on threads of their own), so the table is guarded by a thread lock and the
  shared fetch is a :class:`concurrent.futures.Future`; a waiter that is cancelled does not
  cancel the fetch the others wait for.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import threading
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Hashable
from typing import Generic, TypeVar

K = TypeVar("K", bound=Hashable)
V = TypeVar("V")


class SingleFlightCache(Generic[K, V]):
    """Values by key, each fetched once for all concurrent askers and kept until its deadline."""

    def __init__(self, *, max_entries: int | None = None,
                 abandoned: Callable[[], Exception] | None = None) -> None:
        self.max_entries = max_entries
        self._abandoned = abandoned
        self._entries: OrderedDict[K, tuple[float, V]] = OrderedDict()
        self._inflight: dict[K, concurrent.futures.Future[V]] = {}
        self._lock = threading.Lock()
        self.fetches = 0  # how often a miss started a fetch (tests, benchmarks)

    async def get(self, key: K, fetch: Callable[[], Awaitable[V]], expires: Callable[[V], float],
                  observe: Callable[[bool], None] | None = None) -> V:
        """The value for ``key``: cached, shared with a fetch under way, or ``fetch()``-ed now.

        ``observe(fetching)`` is told, before any waiting, whether this call fetches (a miss)
        or not (a hit, or a wait for another asker's fetch).
        """
        pending, mine = self._lookup(key)
        if observe is not None:
            observe(mine)
        if not mine:
            if pending.done():  # a hit (or a fetch that has just ended)
                return pending.result()
            return await asyncio.shield(asyncio.wrap_future(pending))
        try:
            value = await fetch()
            deadline = expires(value)
        except BaseException as exc:
            with self._lock:
                del self._inflight[key]
            shared = exc if isinstance(exc, Exception) or self._abandoned is None else self._abandoned()
            pending.set_exception(shared)
            raise
        self._store(key, value, deadline)
        pending.set_result(value)
        return value

    def _lookup(self, key: K) -> tuple[concurrent.futures.Future[V], bool]:
        """The fetch to wait for (already done for a cached value) and whether the caller must make it."""
        with self._lock:
            entry = self._entries.get(key)
            if entry is not None and entry[0] > time.monotonic():
                self._entries.move_to_end(key)
                cached: concurrent.futures.Future[V] = concurrent.futures.Future()
                cached.set_result(entry[1])
                return cached, False
            pending = self._inflight.get(key)
            if pending is not None:
                return pending, False
            pending = self._inflight[key] = concurrent.futures.Future()
            self.fetches += 1
            return pending, True

    def _store(self, key: K, value: V, deadline: float) -> None:
        with self._lock:
            del self._inflight[key]
            self._entries[key] = (deadline, value)
            self._entries.move_to_end(key)
            while self.max_entries is not None and len(self._entries) > self.max_entries:
                self._entries.popitem(last=False)
