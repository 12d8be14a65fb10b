"""The Bearer access token of a CSC request: taken from the ``Authorization`` header, then checked.

A missing header is a 401 ``invalid_token``; a header of another scheme, or an empty token, is
a 400 ``invalid_request``; a token the store does not know, or of a scope the method does not
accept, is refused before the body is parsed — except for a method that checks the token in the
store call that spends (``Method.token_at_spend``: signHash), which calls :func:`authenticate`
only for a request it refuses before that call.
"""

from __future__ import annotations

from aiohttp import web

from rssp.auth.tokens import Principal
from rssp.errors import CSCError, invalid_request, invalid_token, wrong_scope
from rssp.services import Services


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


async def authenticate(services: Services, token: str, scopes: frozenset[str]) -> Principal:
    """Who holds ``token``, if its scope is one of ``scopes``; else the CSC token errors (401)."""
    principal = await services.tokens.authenticate(token)
    if principal.scope not in scopes:
        raise wrong_scope()
    return principal
