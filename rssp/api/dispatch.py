"""The handler aiohttp calls for a CSC method: the steps every method shares, in order.

Try the method's fast path (a response, or None to go on), authenticate the Bearer token and
check its scope (:mod:`rssp.api.bearer`), read the body with the clients' aliases mapped
(:mod:`rssp.api.body`), then call the method's handler with a :class:`~rssp.api.call.Call`.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from rssp.api.bearer import principal_of
from rssp.api.body import method_body
from rssp.api.call import SERVICES, Call

if TYPE_CHECKING:
    from rssp.api.registry import Method


def dispatcher(method: Method, version: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        if method.fast_path is not None:
            response = await method.fast_path(request, services)
            if response is not None:
                return response
        principal = await principal_of(request, method, services)
        body = await method_body(request, method)
        return await method.handler(Call(request, body, services, version, principal))

    return dispatch
