"""Turning every failure into a CSC error body, and every request body into a JSON object.

Nothing below the handlers formats HTTP errors: they raise :class:`~rssp.errors.CSCError`,
and anything unexpected becomes a bare ``server_error`` here, logged without the request body
(it may hold PINs or SADs) and never with a traceback in the response.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from aiohttp import web

from rssp.api.parse import Body
from rssp.errors import CSCError, invalid_request

log = logging.getLogger("rssp.api")

Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


class UnreadableBody(CSCError):
    """A body that cannot be read to its end (e.g. a Content-Encoding that does not decode)."""

    def __init__(self) -> None:
        super().__init__(400, "invalid_request", "Malformed request body")


def error_response(err: CSCError) -> web.Response:
    return web.json_response(err.body(), status=err.status, headers=err.headers or None)


@web.middleware
async def csc_errors(request: web.Request, handler: Handler) -> web.StreamResponse:
    try:
        return await handler(request)
    except CSCError as err:
        response = error_response(err)
        if isinstance(err, UnreadableBody):
            response.force_close()  # aiohttp drops the connection after it: say so (Connection: close)
        return response
    except web.HTTPRequestEntityTooLarge:
        return error_response(CSCError(413, "invalid_request", "Request body too large"))
    except web.HTTPMethodNotAllowed:
        return error_response(CSCError(405, "invalid_request", "Method not allowed; use POST"))
    except web.HTTPNotFound:
        return error_response(CSCError(404, "invalid_request", "Unknown method"))
    except web.HTTPException as exc:
        if exc.status >= 500:
            log.error("HTTP %s on %s", exc.status, request.path)
            return error_response(CSCError(500, "server_error", "Internal error"))
        return error_response(CSCError(exc.status, "invalid_request", exc.reason or "Invalid request"))
    except Exception:
        log.exception("unhandled error on %s", request.path)
        return error_response(CSCError(500, "server_error", "Internal error"))


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
        data: Any = json.loads(raw)
    except (ValueError, RecursionError):  # UnicodeDecodeError is a ValueError
        raise invalid_request("Malformed JSON body") from None
    if not isinstance(data, dict):
        raise invalid_request("The request body must be a JSON object")
    return Body(data)


def client_ip(request: web.Request) -> str | None:
    return request.remote
