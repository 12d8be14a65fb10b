"""Pushed authorization requests (RFC 9126): a validated request parked under a one-time URI.

The ``request_uri`` is ``urn:ietf:params:oauth:request_uri:`` plus 256 random bits; only its
digest is stored. It is bound to the client that pushed it, valid for ``par_ttl_seconds``
(at most 90 s) and spent by the first ``oauth2/authorize`` that presents it.
"""

from __future__ import annotations

import time

from sqlalchemy import bindparam, update

from rssp.auth.secrets import digest, new_secret
from rssp.oauth.request import AuthorizationRequest
from rssp.store import Store
from rssp.store.schema import par_requests

URN_PREFIX = "urn:ietf:params:oauth:request_uri:"


async def push(store: Store, req: AuthorizationRequest, ttl: int) -> str:
    value = URN_PREFIX + new_secret()
    now = time.time()
    async with store.write() as conn:
        await conn.execute(par_requests.delete().where(par_requests.c.expires_at < now - 3600))
        await conn.execute(par_requests.insert().values(
            uri_hash=digest(value), client_id=req.client_id, request=req.to_json(), used=False,
            expires_at=now + ttl, created_at=now,
        ))
    return value


_SPEND = (
    update(par_requests)
    .where(par_requests.c.uri_hash == bindparam("h"), par_requests.c.client_id == bindparam("cid"),
           par_requests.c.used.is_(False), par_requests.c.expires_at > bindparam("now"))
    .values(used=True)
    .returning(par_requests.c.request)
)


async def redeem(store: Store, request_uri: str, client_id: str) -> AuthorizationRequest | None:
    """The pushed request, once; None if unknown, used, expired or pushed by another client."""
    if not request_uri.startswith(URN_PREFIX) or len(request_uri) > 200:
        return None
    params = {"h": digest(request_uri), "cid": client_id, "now": time.time()}
    row = await store.transaction(lambda conn: conn.execute(_SPEND, params).first())
    return AuthorizationRequest.from_json(row.request) if row else None
