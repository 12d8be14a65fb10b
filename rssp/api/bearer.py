"""The Bearer access token of a CSC request: taken from the ``Authorization`` header, then checked.

A missing header is a 401 ``invalid_token``; a header of another scheme, or an empty token, is
a 400 ``invalid_request``; a token the store does not know, or of a scope the method does not
accept, is refused before the body is parsed.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from rssp.auth.tokens import Principal
from rssp.errors import CSCError, invalid_request, invalid_token, wrong_scope
from rssp.services import Services

if TYPE_CHECKING:
    from rssp.api.registry import Method


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise CSCError(401, "invalid_token", "Missing access token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid_request("Malformed authorization header")
    if not token.isascii():  # aiohttp hands over non-UTF-8 header bytes as lone surrogates
        raise invalid_token()
    return token.strip()


async def principal_of(request: web.Request, method: Method, services: Services) -> Principal | None:
    """Who calls ``method``: the Bearer token's principal, in one of the method's scopes.

    None for a method that authenticates its caller itself (``auth`` ``none`` or ``custom``).
    """
    if method.auth != "bearer":
        return None
    principal = await services.tokens.authenticate(bearer_token(request))
    if principal.scope not in method.scopes:
        raise wrong_scope()
    return principal
