"""Turning every failure into a CSC error body, and every request body into a JSON object.

Nothing below the handlers formats HTTP errors: they raise :class:`~rssp.errors.CSCError`,
and anything unexpected becomes a bare ``server_error`` here, logged without the request body
(it may hold PINs or SADs) and never with a traceback in the response.

Every request body is read whole, within a time limit, before any handler runs
(:func:`complete_body`): a handler never sees a partial body, a client that leaves or stalls
mid-body costs one log line and no work, and no route can forget the limit.
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web
from aiohttp.typedefs import Middleware  # the protocol web.Application(middlewares=) takes

from rssp import metrics
from rssp.api.parse import Body, DuplicateMember, loads_unique
from rssp.errors import CSCError, invalid_request
from rssp.store.errors import database_unavailable

log = logging.getLogger("rssp.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UnreadableBody(CSCError):
    """A body that cannot be read to its end: a Content-Encoding that does not decode, a client
    too slow to send it, or one that went away. The rest is not read: the connection closes."""

    def __init__(self, status: int = 400, description: str = "Malformed request body") -> None:
        super().__init__(status, "invalid_request", description)


def error_response(err: CSCError) -> web.Response:
    return web.json_response(err.body(), status=err.status, headers=err.headers or None)


@web.middleware
async def csc_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CSCError as err:
        response = error_response(err)
        if err.status == 401:
            response.headers["WWW-Authenticate"] = challenge(request, err)
        if isinstance(err, UnreadableBody):
            response.force_close()  # aiohttp drops the connection after it: say so (Connection: close)
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(CSCError(413, "invalid_request", "Request body too large"))
    except web.HTTPMethodNotAllowed:
        return error_response(CSCError(405, "invalid_request", "Method not allowed; use POST"))
    except web.HTTPNotFound:
        if _CSC_METHOD.match(request.path):  # the CSC OpenAPI's answer for a method not offered
            return error_response(CSCError(501, "not_implemented", "Method not implemented"))
        return error_response(CSCError(404, "invalid_request", "Unknown method"))
    except web.HTTPException as exc:
        if exc.status >= 500:
            log.error("HTTP %s on %s", exc.status, request.path)
            return error_response(CSCError(500, "server_error", "Internal error"))
        return error_response(CSCError(exc.status, "invalid_request", exc.reason or "Invalid request"))
    except Exception as exc:
        if database_unavailable(exc):
            return _unavailable(request, exc)
        log.exception("unhandled error on %s", request.path)
        return error_response(CSCError(500, "server_error", "Internal error"))


_CSC_METHOD = re.compile(r"^/csc/v[12]/[^/]")  # a method name under a CSC API version this server speaks
_TOKEN_REFUSED = frozenset({"invalid_token", "expired_token"})


def challenge(request: web.Request, err: CSCError) -> str:
    """The ``WWW-Authenticate`` value of a 401 (RFC 9110 §11.6.1 requires one on every 401).

    The scheme is the route's (``auth_scheme`` on its handler, set where routes are mounted):
    ``Basic`` where a client authenticates with a password or client secret, else ``Bearer``.
    A Bearer token that was sent and refused is named ``invalid_token`` (RFC 6750 §3.1); a
    request without one gets the bare challenge (RFC 6750 §3). Descriptions are fixed ASCII texts.
    """
    if getattr(request.match_info.handler, "auth_scheme", "Bearer") == "Basic":
        return 'Basic realm="rssp", charset="UTF-8"'
    scheme, _, token = request.headers.get("Authorization", "").partition(" ")
    if err.error in _TOKEN_REFUSED and scheme.lower() == "bearer" and token.strip():
        description = err.description.replace("\\", "").replace('"', "")
        return f'Bearer error="invalid_token", error_description="{description}"'
    return "Bearer"


UNAVAILABLE = CSCError(503, "temporarily_unavailable", "The service is temporarily unavailable",
                       headers={"Retry-After": "1"})
_quiet_until = [0.0]  # one warning per second per process while the database is away, not one per request


def _unavailable(request: web.Request, exc: BaseException) -> web.Response:
    """The database cannot be used now: 503 with Retry-After, one log line (no traceback) per second."""
    metrics.m().db_unavailable.inc()
    now = time.monotonic()
    if now >= _quiet_until[0]:
        _quiet_until[0] = now + 1.0
        log.warning("database unavailable (%s: %s); answering 503 (first seen on %s)", type(exc).__name__,
                    str(exc).splitlines()[0][:200] if str(exc) else "", request.path[:200])
    return error_response(UNAVAILABLE)


def complete_body(timeout: float, max_bytes: int) -> Middleware:
    """Read the whole body (cached by aiohttp for the handler) or give up after ``timeout`` seconds.

    Why: aiohttp waits for a body as long as the client keeps the connection, and reports a
    client that left mid-body as an exception from inside the handler. Here a stalled body is
    a 408 and a closed connection; a departed client one log line (the body is never logged).

    Bodies are limited to ``max_bytes``, except on the routes that take whole documents (their
    handler says ``large_body``), which the application-wide limit bounds instead. A declared
    length over the limit is refused before anything is read.
    """

    @web.middleware
    async def middleware(request: web.Request, handler: Handler) -> web.StreamResponse:
        large = getattr(request.match_info.handler, "large_body", False)
        if not large and (request.content_length or 0) > max_bytes:
            raise UnreadableBody(413, "Request body too large")
        if request.can_read_body:
            await _read_within(request, None if request.content.is_eof() else timeout)
            if not large and len(await request.read()) > max_bytes:
                raise UnreadableBody(413, "Request body too large")
        return await handler(request)

    return middleware


async def _read_within(request: web.Request, timeout: float | None) -> None:  # noqa: ASYNC109 - expiry is a 408
    try:
        async with asyncio.timeout(timeout):
            await request.read()
    except web.RequestPayloadError:
        raise UnreadableBody() from None
    except TimeoutError:
        log.info("request body incomplete after %ss, answered 408 and closing: %s", timeout, _progress(request))
        raise UnreadableBody(408, "Request body not received in time") from None
    except ConnectionError:  # aiohttp's ClientConnectionResetError is one
        log.info("client left before its request body was complete: %s", _progress(request))
        raise UnreadableBody(400, "Request body incomplete") from None


def _progress(request: web.Request) -> str:
    """Which request and how much of its body arrived (never the body; the path still %-encoded, as sent)."""
    length = request.content_length if request.content_length is not None else "none (chunked)"
    return (f"{request.method} {request.rel_url.raw_path[:200]}, {request.content.total_bytes} body bytes received, "
            f"Content-Length {length}")


async def read_body(request: web.Request, *, allow_empty: bool = False) -> Body:
    """The request body as a JSON object; anything else is a 400."""
    try:
        raw = await request.read()
    except web.RequestPayloadError:
        raise UnreadableBody() from None
    if not raw.strip():
        if allow_empty:
            return Body({})
        raise invalid_request("The request body must be a JSON object")
    if request.content_type not in ("application/json", "application/octet-stream", ""):
        raise invalid_request("Content-Type must be application/json")
    try:
        data: Any = loads_unique(raw)
    except DuplicateMember as duplicate:
        raise invalid_request(duplicate.description) from None
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise invalid_request("Malformed JSON body") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object")
    return Body(data)


def client_ip(request: web.Request) -> str | None:
    return request.remote
