"""Per request: a request ID, one access-log line, and the request metrics.

The outermost middleware. It gives every request an ID (the client's ``X-Request-ID`` when it
is a short token of safe characters, else a new random one), echoes it in the response's
``X-Request-ID`` header, and when the response is ready writes one ``INFO`` record on the
``rssp.access`` logger: the ID, HTTP method, CSC method (or route), path without its query,
status, duration and client address. Never a header, a query string or a body: those carry
tokens, codes, SADs and PINs.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from dataclasses import dataclass, field

from aiohttp import web

from rssp import metrics
from rssp.api.middleware import Handler
from rssp.logs import FIELDS

log = logging.getLogger("rssp.access")

HEADER = "X-Request-ID"
REQUEST_ID: web.RequestKey[str] = web.RequestKey("request_id", str)


@dataclass
class Traffic:
    """Requests in flight in this process, and whether it is stopping (read by ``/readyz``).

    The stop (:mod:`rssp.serving`) waits for ``inflight`` to reach 0 before aiohttp's own
    shutdown, which stops reading from connections: a request whose body was still arriving
    would be cut. Once stopping, every response says ``Connection: close``.
    """

    inflight: int = 0
    stopping: bool = False
    _idle: asyncio.Event = field(default_factory=asyncio.Event)

    def enter(self) -> None:
        self.inflight += 1
        self._idle.clear()

    def leave(self) -> None:
        self.inflight -= 1
        if self.inflight == 0:
            self._idle.set()

    async def wait_idle(self, timeout: float) -> bool:  # noqa: ASYNC109 - expiry is an answer (False), not an error
        """True once no request is in flight; False if ``timeout`` passed first."""
        if self.inflight == 0:
            return True
        try:
            async with asyncio.timeout(timeout):
                await self._idle.wait()
        except TimeoutError:
            return False
        return True


TRAFFIC: web.AppKey[Traffic] = web.AppKey("traffic", Traffic)
_SAFE_ID = re.compile(r"^[A-Za-z0-9._:-]{1,128}$")
_PREFIXES = ("/csc/v2/", "/csc/v1/")


def request_id(request: web.Request) -> str:
    given = request.headers.get(HEADER, "")
    return given if _SAFE_ID.match(given) else uuid.uuid4().hex


def method_label(request: web.Request) -> str:
    """The CSC method (``signatures/signHash``) or the route (``/oauth2/token``); ``unmatched`` otherwise.

    From the router's resource, never from the path as sent: the label set stays bounded.
    """
    route = request.match_info.route
    resource = route.resource if route is not None else None
    if resource is None or getattr(request.match_info, "http_exception", None) is not None:
        return "unmatched"
    name = resource.canonical
    for prefix in _PREFIXES:
        if name.startswith(prefix):
            return name[len(prefix):]
    return name


@web.middleware
async def access(request: web.Request, handler: Handler) -> web.StreamResponse:
    rid = request_id(request)
    request[REQUEST_ID] = rid
    traffic = request.app[TRAFFIC]
    traffic.enter()
    start = time.perf_counter()
    status: int | str = "cancelled"  # the client left before an answer (aiohttp cancels the handler)
    try:
        response = await handler(request)
        status = response.status
        if not response.prepared:
            response.headers[HEADER] = rid
            if traffic.stopping:
                response.force_close()  # keep-alive clients go elsewhere for their next request
        return response
    finally:
        traffic.leave()
        _record(request, rid, status, time.perf_counter() - start)


def _record(request: web.Request, rid: str, status: int | str, seconds: float) -> None:
    label = method_label(request)
    mx = metrics.m()
    mx.requests.labels(label, str(status)).inc()
    mx.latency.labels(label).observe(seconds)
    fields = {"request_id": rid, "http_method": request.method, "method": label, "path": request.path[:200],
              "status": status, "duration_ms": round(seconds * 1000, 3), "client": request.remote}
    log.info("%s %s %s %.1fms", request.method, request.path[:200], status, seconds * 1000,
             extra={FIELDS: fields})
