"""rssp.singleflight.SingleFlightCache: the revocation cache's and the TSA chain cache's shared fetches."""

from __future__ import annotations

import asyncio
import threading
import time

import pytest

from rssp.singleflight import SingleFlightCache


class Source:
    """A fetch that counts its calls and holds each one until released."""

    def __init__(self, result: str | Exception = "value") -> None:
        self.calls = 0
        self.started = asyncio.Event()
        self.gate = asyncio.Event()
        self.result = result

    async def fetch(self) -> str:
        self.calls += 1
        self.started.set()
        await self.gate.wait()
        if isinstance(self.result, Exception):
            raise self.result
        return self.result


def forever(_value: str) -> float:
    return time.monotonic() + 3600


async def test_concurrent_misses_share_one_fetch_and_the_value_is_kept() -> None:
    cache: SingleFlightCache[str, str] = SingleFlightCache()
    source = Source()
    seen: list[bool] = []
    tasks = [asyncio.create_task(cache.get("k", source.fetch, forever, seen.append)) for _ in range(5)]
    await source.started.wait()
    source.gate.set()
    assert await asyncio.gather(*tasks) == ["value"] * 5
    assert source.calls == 1 and cache.fetches == 1 and seen == [True, False, False, False, False]
    assert await cache.get("k", source.fetch, forever) == "value" and source.calls == 1  # a hit


async def test_a_failure_reaches_every_waiter_and_is_not_kept() -> None:
    cache: SingleFlightCache[str, str] = SingleFlightCache()
    failing = Source(ValueError("responder down"))
    tasks = [asyncio.create_task(cache.get("k", failing.fetch, forever)) for _ in range(3)]
    await failing.started.wait()
    failing.gate.set()
    results = await asyncio.gather(*tasks, return_exceptions=True)
    assert [str(r) for r in results] == ["responder down"] * 3
    working = Source()
    working.gate.set()
    assert await cache.get("k", working.fetch, forever) == "value" and working.calls == 1  # asked again


async def _owner_and_waiter(cache: SingleFlightCache[str, str]
                            ) -> tuple[Source, asyncio.Task[str], asyncio.Task[str]]:
    """A fetch under way (the owner's) and a second asker waiting for it."""
    source = Source()
    owner = asyncio.create_task(cache.get("k", source.fetch, forever))
    await source.started.wait()
    waiter = asyncio.create_task(cache.get("k", source.fetch, forever))
    await asyncio.sleep(0)
    return source, owner, waiter


@pytest.mark.parametrize("abandoned", [None, lambda: LookupError("fetch abandoned")])
async def test_the_fetchers_cancellation_is_shared_only_without_a_substitute(abandoned) -> None:
    _source, owner, waiter = await _owner_and_waiter(SingleFlightCache(abandoned=abandoned))
    owner.cancel()
    if abandoned is None:
        with pytest.raises(asyncio.CancelledError):
            await waiter
    else:
        with pytest.raises(LookupError, match="fetch abandoned"):
            await waiter


async def test_a_cancelled_waiter_does_not_cancel_the_shared_fetch() -> None:
    source, owner, waiter = await _owner_and_waiter(SingleFlightCache())
    waiter.cancel()
    source.gate.set()
    assert await owner == "value"
    assert waiter.cancelled()


async def test_expired_values_are_fetched_again_and_the_least_recently_used_go_first() -> None:
    cache: SingleFlightCache[str, str] = SingleFlightCache(max_entries=2)
    source = Source()
    source.gate.set()
    await cache.get("old", source.fetch, lambda _v: time.monotonic() - 1)  # expired at once
    await cache.get("old", source.fetch, forever)
    assert source.calls == 2
    await cache.get("a", source.fetch, forever)
    await cache.get("old", source.fetch, forever)  # used: "a" is now the least recent
    await cache.get("b", source.fetch, forever)
    await cache.get("old", source.fetch, forever)
    assert source.calls == 4
    await cache.get("a", source.fetch, forever)
    assert source.calls == 5


def test_askers_on_other_threads_and_loops_share_the_fetch() -> None:
    cache: SingleFlightCache[str, str] = SingleFlightCache()
    started, waiting, release = threading.Event(), threading.Event(), threading.Event()
    calls: list[int] = []

    async def slow() -> str:
        calls.append(1)
        started.set()
        await asyncio.to_thread(release.wait, 10)
        return "value"

    def ask(observe: threading.Event | None = None) -> None:
        seen = (lambda mine: observe.set()) if observe is not None else None
        results.append(asyncio.run(cache.get("k", slow, forever, seen)))

    results: list[str] = []
    first = threading.Thread(target=ask)
    first.start()
    assert started.wait(10)
    second = threading.Thread(target=ask, args=(waiting,))
    second.start()
    assert waiting.wait(10)  # the second thread's loop now waits for the first one's fetch
    release.set()
    first.join(10)
    second.join(10)
    assert results == ["value", "value"] and calls == [1]
