"""``manages/login``: a CA's management client exchanges its secret for a ``manage`` token.

The token lives in the same table as service tokens, with ``scope = "manage"`` and the caID in
``user_id``; the dispatcher's scope check (``Method.scopes``) then keeps it off every CSC
method and keeps service tokens off ``manages/*``.
"""

from __future__ import annotations

import time

from rssp.auth.secrets import digest, new_id, new_secret
from rssp.store import Conn
from rssp.store.schema import tokens

MANAGE_SCOPE = "manage"


async def issue_manage_token(conn: Conn, ca_id: str, client_id: str, ttl: int) -> str:
    """Insert an access token bound to ``ca_id``; only its SHA-256 is stored."""
    value = new_secret()
    now = time.time()
    await conn.execute(tokens.insert().values(
        token_hash=digest(value), kind="access", grant_id=new_id(), user_id=ca_id, scope=MANAGE_SCOPE,
        client_id=client_id, expires_at=now + ttl, revoked=False, created_at=now,
    ))
    return value
