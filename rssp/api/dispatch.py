"""The handler aiohttp calls for a CSC method: the steps every method shares, in order.

Authenticate the Bearer token and check its scope (:mod:`rssp.api.bearer`), read the body with
the clients' aliases mapped (:mod:`rssp.api.body`), then call the method's handler with a
:class:`~rssp.api.call.Call`. A ``token_at_spend`` method (signHash) gets the token unchecked in
``Call.token`` and checks it in the transaction that spends its SAD; if its body is refused, the
token is checked first all the same, so a bad token answers 401 before a bad body answers 400.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING

from aiohttp import web

from rssp.api.bearer import authenticate, bearer_token
from rssp.api.body import method_body
from rssp.api.call import SERVICES, Call
from rssp.errors import CSCError

if TYPE_CHECKING:
    from rssp.api.registry import Method


def dispatcher(method: Method, version: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        token = bearer_token(request) if method.auth == "bearer" else None
        principal = None
        if token is not None and not method.token_at_spend:
            principal = await authenticate(services, token, method.scopes)
        try:
            body = await method_body(request, method)
        except CSCError:
            if token is not None and principal is None:  # token_at_spend: 401 before 400 all the same
                await authenticate(services, token, method.scopes)
            raise
        return await method.handler(Call(request, body, services, version, principal, token))

    return dispatch
