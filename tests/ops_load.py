"""Signing load for the process tests (#18): clients that authorize and sign again and again,
recording what happened to every request, so a test can tell a request the server never
accepted from one it accepted and then lost.

Each request goes on a new connection, so a stopped or killed process is seen at once:

- ``refused``: the connection was not accepted (the port is closed). Nothing was received;
  the client tries the next host when the load has several (as a load balancer does);
- ``dropped``: the connection was accepted and then lost without an answer;
- an HTTP status: answered.

A ``signatures/signHash`` that was dropped is sent again once with the same SAD, as docs/
operations.md tells clients to do: either it was not spent (200) or it was, and its signature
is lost with the connection (400); never two signatures.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

import aiohttp
from deployment import Deployment
from ops_helpers import digest, sad_for, sign


@dataclass
class Request:
    call: str  # "authorize", "sign", "sign again" (a dropped signHash sent again with its SAD)
    host: int  # index in the load's hosts of the host that took (or refused) the connection
    started: float  # time.monotonic() when sent
    ended: float
    status: int = 0  # when answered
    error: str = ""  # "refused" or "dropped <exception>"
    body: Any = None
    digest: bytes = b""


class SigningLoad:
    """``clients`` loops of authorize-then-sign on ``hosts`` (a one-signature SAD each time)."""

    def __init__(self, hosts: list[Deployment], token: str, cred: str, clients: int = 4) -> None:
        self.hosts, self.token, self.cred = hosts, token, cred
        self.requests: list[Request] = []
        self._stop = asyncio.Event()
        self._tasks = [asyncio.ensure_future(self._client(n)) for n in range(clients)]

    async def stop(self) -> list[Request]:
        self._stop.set()
        await asyncio.gather(*self._tasks)
        return self.requests

    def answered(self, status: int, after: float = 0.0) -> list[Request]:
        return [r for r in self.requests if r.status == status and r.started > after]

    async def _client(self, n: int) -> None:
        connector = aiohttp.TCPConnector(force_close=True)
        async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
            i = 0
            while not self._stop.is_set():
                h, i = digest(f"load {n} {i} {time.time()}"), i + 1
                got = await self._send(http, "authorize", n + i, h, lambda base, h=h: sad_for(http, base, self.token,
                                                                                                self.cred, h))
                if got is None or got.status != 200:
                    await asyncio.sleep(0.05)
                    continue
                sad = got.body["SAD"]
                got = await self._send(http, "sign", n + i, h, lambda base, sad=sad, h=h: sign(http, base, self.token,
                                                                                                 self.cred, sad, h))
                if got is not None and got.error.startswith("dropped"):
                    await self._send(http, "sign again", n + i, h,
                                     lambda base, sad=sad, h=h: sign(http, base, self.token, self.cred, sad, h))

    async def _send(self, http: aiohttp.ClientSession, call: str, turn: int, h: bytes, request: Any) -> Request | None:
        """Send to host ``turn``, or the next one that accepts; the request as recorded (None: all refused)."""
        for k in range(len(self.hosts)):
            host = (turn + k) % len(self.hosts)
            started = time.monotonic()
            try:
                status, body = await request(self.hosts[host].base)
                done = Request(call, host, started, time.monotonic(), status=status, body=body, digest=h)
            except aiohttp.ClientConnectorError:  # not accepted: nothing was received
                self.requests.append(Request(call, host, started, time.monotonic(), error="refused", digest=h))
                continue
            except (TimeoutError, aiohttp.ClientError) as exc:  # accepted, then lost
                done = Request(call, host, started, time.monotonic(), error=f"dropped {type(exc).__name__}", digest=h)
            self.requests.append(done)
            return done
        await asyncio.sleep(0.1)
        return None

