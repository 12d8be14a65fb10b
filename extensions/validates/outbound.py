"""The only HTTP client validation uses: every fetch checked, counted, timed and size-capped.

pyhanko-certvalidator's own fetchers follow redirects anywhere, read whole answers into
memory and have no budget across the fetchers of one request; a hostile certificate made
one request fetch 965 times and a 200 MiB answer cost 200 MiB. Here, for each fetch:

- the URL, and every redirect target, passes :class:`~.fetchpolicy.FetchPolicy` (redirects
  are followed by hand, at most ``max_fetch_redirects``; a POST only on 307/308);
- the request's :class:`FetchBudget` is charged (``max_fetches`` per request, each redirect
  hop included) and bounds the time (``revocation_timeout_seconds`` per fetch, never past
  the request's ``fetch_total_seconds``);
- the answer is streamed and cut off past ``max_fetch_bytes`` (a larger Content-Length is
  refused before reading); content encodings are not decoded (no decompression bombs).

A :class:`FetchRefused` is the policy's doing; a :class:`FetchFailed` is the network's (the
answer may come later: ``TRY_LATER``).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

import aiohttp
from yarl import URL

from extensions.validates.fetchpolicy import AddressRefused, FetchPolicy, FetchRefused, PolicyResolver
from extensions.validates.settings import ValidationSettings

USER_AGENT = "rssp-validation"
_REDIRECTS = {301, 302, 303, 307, 308}
_KEEP_METHOD = {307, 308}
CHUNK = 64 * 1024


class FetchFailed(Exception):
    """The source did not answer usefully (unreachable, timed out, an error status, too large)."""


@dataclass(frozen=True)
class Answer:
    body: bytes
    content_type: str | None


class FetchBudget:
    """What one validation request may still fetch: a count and a deadline."""

    def __init__(self, settings: ValidationSettings) -> None:
        self.left = settings.max_fetches
        self.per_fetch = settings.revocation_timeout_seconds
        self.deadline = time.monotonic() + settings.fetch_total_seconds

    def charge(self) -> float:
        """Count one network request; the seconds it may take."""
        if self.left <= 0:
            raise FetchRefused("fetch budget of this request spent ([validation] max_fetches)")
        remaining = self.deadline - time.monotonic()
        if remaining <= 0:
            raise FetchFailed("fetch time of this request spent ([validation] fetch_total_seconds)")
        self.left -= 1
        return min(self.per_fetch, remaining)


class Outbound:
    """One HTTP session (of the event loop it is used on) under the fetch policy."""

    def __init__(self, settings: ValidationSettings, policy: FetchPolicy) -> None:
        self.settings, self.policy = settings, policy
        self._session: aiohttp.ClientSession | None = None

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            connector = aiohttp.TCPConnector(resolver=PolicyResolver(self.policy), limit_per_host=8)
            self._session = aiohttp.ClientSession(connector=connector, auto_decompress=False, trust_env=False,
                                                  headers={"User-Agent": USER_AGENT, "Accept-Encoding": "identity"})
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    async def get(self, url: str, budget: FetchBudget, accept: str) -> Answer:
        return await self._fetch("GET", url, budget, {"Accept": accept}, None)

    async def post(self, url: str, budget: FetchBudget, body: bytes, content_type: str, accept: str) -> Answer:
        return await self._fetch("POST", url, budget, {"Accept": accept, "Content-Type": content_type}, body)

    async def _fetch(self, method: str, url: str, budget: FetchBudget, headers: dict[str, str],
                     body: bytes | None) -> Answer:
        target = self.policy.check(url)
        for _hop in range(self.settings.max_fetch_redirects + 1):
            seconds = budget.charge()
            try:
                answer, target = await asyncio.wait_for(self._once(method, target, headers, body), seconds)
            except TimeoutError:
                raise FetchFailed("timed out") from None
            if answer is not None:
                return answer
        raise FetchRefused("too many redirects")

    async def _once(self, method: str, url: URL, headers: dict[str, str], body: bytes | None
                    ) -> tuple[Answer | None, URL]:
        """One request: the answer, or ``(None, next_url)`` for an allowed redirect."""
        try:
            async with self.session.request(method, url, headers=headers, data=body, allow_redirects=False) as resp:
                if resp.status in _REDIRECTS and "Location" in resp.headers:
                    if method != "GET" and resp.status not in _KEEP_METHOD:
                        raise FetchFailed(f"redirect {resp.status} of a {method}")
                    return None, self.policy.check(url.join(URL(resp.headers["Location"])))
                if resp.status != 200:
                    raise FetchFailed(f"HTTP {resp.status}")
                return Answer(await self._read(resp), resp.headers.get("Content-Type")), url
        except aiohttp.ClientConnectorError as exc:
            if isinstance(exc.os_error, AddressRefused):
                raise FetchRefused(str(exc.os_error)) from None
            raise FetchFailed("unreachable") from None
        except (aiohttp.ClientError, ValueError, OSError) as exc:
            raise FetchFailed(type(exc).__name__) from None

    async def _read(self, resp: aiohttp.ClientResponse) -> bytes:
        limit = self.settings.max_fetch_bytes
        too_large = FetchRefused("answer larger than [validation] max_fetch_bytes")
        if resp.content_length is not None and resp.content_length > limit:
            resp.close()
            raise too_large
        data = bytearray()
        async for chunk in resp.content.iter_chunked(CHUNK):
            data += chunk
            if len(data) > limit:
                resp.close()  # drop the connection: the rest is never read
                raise too_large
        return bytes(data)
