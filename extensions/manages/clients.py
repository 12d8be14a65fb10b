"""``manages/login``: a CA's management client exchanges its secret for a ``manage`` token.

The token is a core access token (:meth:`rssp.auth.tokens.TokenService.issue_scoped`) with
``scope = "manage"`` and the caID as its ``user_id``; the dispatcher's scope check
(``Method.scopes``) then keeps it off every CSC method and keeps service tokens off
``manages/*``.
"""

from __future__ import annotations

from rssp.auth.secrets import new_id
from rssp.services import Services
from rssp.store import Conn

MANAGE_SCOPE = "manage"


async def issue_manage_token(services: Services, conn: Conn, ca_id: str, client_id: str, ttl: int) -> str:
    """An access token bound to ``ca_id``, in the caller's transaction; only its SHA-256 is stored."""
    issued = await services.tokens.issue_scoped(conn, user_id=ca_id, scope=MANAGE_SCOPE, client_id=client_id,
                                                grant_id=new_id(), ttl=ttl)
    return issued.access_token
