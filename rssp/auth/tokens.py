"""Service access tokens (``auth/login``) and refresh tokens.

One login is one *grant*: an access token and, with ``rememberMe``, a refresh token. Revoking
the refresh token ends the whole grant (its access tokens too); revoking an access token
leaves the refresh token alone (CSC §auth/revoke). Refreshing rotates the refresh token.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import bindparam, select, update
from sqlalchemy.engine import Connection

from rssp.auth.secrets import digest, new_id, new_secret
from rssp.config import SecurityConfig
from rssp.errors import CSCError, expired_token, invalid_request, invalid_token
from rssp.store import Conn, Store
from rssp.store.prepared import Prepared
from rssp.store.schema import tokens


_BY_HASH = Prepared(select(tokens).where(tokens.c.token_hash == bindparam("h")))  # the hot path


@dataclass(frozen=True)
class Principal:
    """Who is calling, as established by the Bearer token."""

    user_id: str
    scope: str
    grant_id: str
    token_hash: str
    client_id: str | None = None
    credential_id: str | None = None


@dataclass(frozen=True)
class IssuedTokens:
    access_token: str
    expires_in: int
    refresh_token: str | None = None

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"access_token": self.access_token, "expires_in": self.expires_in}
        if self.refresh_token:
            out["refresh_token"] = self.refresh_token
        return out


class TokenService:
    def __init__(self, store: Store, security: SecurityConfig) -> None:
        self.store = store
        self.security = security

    async def _insert(self, conn: Conn, kind: str, grant_id: str, user_id: str, ttl: int) -> str:
        value = new_secret()
        now = time.time()
        await conn.execute(
            tokens.insert().values(
                token_hash=digest(value), kind=kind, grant_id=grant_id, user_id=user_id, scope="service",
                expires_at=now + ttl, revoked=False, created_at=now,
            )
        )
        return value

    async def issue(self, conn: Conn, user_id: str, remember: bool, grant_id: str | None = None) -> IssuedTokens:
        """Issue an access token (and a refresh token) in the caller's transaction."""
        grant_id = grant_id or new_id()
        ttl = self.security.access_token_ttl_seconds
        access = await self._insert(conn, "access", grant_id, user_id, ttl)
        refresh = None
        if remember:
            refresh = await self._insert(conn, "refresh", grant_id, user_id, self.security.refresh_token_ttl_seconds)
        return IssuedTokens(access, ttl, refresh)

    async def redeem_refresh(self, conn: Conn, refresh_token: str) -> tuple[str, str]:
        """Spend a refresh token of ``auth/login`` (rotation): returns (user_id, grant_id) or raises.

        An OAuth client's refresh token is not accepted here: it would lose its client binding.
        """
        row = await _rotate(conn, refresh_token, None)
        if row is None:
            raise invalid_request("Invalid refresh_token")
        return row.user_id, row.grant_id

    async def issue_scoped(
        self, conn: Conn, *, user_id: str, scope: str, client_id: str, grant_id: str, ttl: int,
        credential_id: str | None = None, refresh_ttl: int | None = None,
    ) -> IssuedTokens:
        """Issue OAuth tokens bound to a client (and, for scope ``credential``, to one credential).

        A refresh token (``refresh_ttl``) shares the grant, so revoking it or replaying the code
        that issued them revokes both (OAuth 2.0 AS, issue 3).
        """
        now = time.time()
        values = {"grant_id": grant_id, "user_id": user_id, "scope": scope, "client_id": client_id,
                  "credential_id": credential_id, "revoked": False, "created_at": now}
        access = new_secret()
        await conn.execute(tokens.insert().values(token_hash=digest(access), kind="access", expires_at=now + ttl,
                                                  **values))
        refresh = None
        if refresh_ttl:
            refresh = new_secret()
            await conn.execute(tokens.insert().values(token_hash=digest(refresh), kind="refresh",
                                                      expires_at=now + refresh_ttl, **values))
        return IssuedTokens(access, ttl, refresh)

    async def redeem_client_refresh(self, conn: Conn, refresh_token: str, client_id: str) -> tuple[str, str, str]:
        """Spend (rotate) a refresh token issued to ``client_id``: (user_id, grant_id, scope) or raise."""
        row = await _rotate(conn, refresh_token, client_id)
        if row is None:
            raise CSCError(400, "invalid_grant", "Invalid parameter refresh_token")
        return row.user_id, row.grant_id, row.scope

    async def authenticate(self, token: str) -> Principal:
        return await self.store.query(partial(principal_for, digest(token)))

    async def revoke(self, conn: Conn, user_id: str, token: str) -> None:
        """Revoke one of the caller's own tokens; a refresh token takes its grant with it."""
        row = (
            await conn.execute(select(tokens).where(tokens.c.token_hash == digest(token), tokens.c.user_id == user_id))
        ).first()
        if row is None:  # the hint is only a hint (RFC 7009 §2.1): any type is looked up
            raise invalid_request("Invalid string parameter token")
        query = update(tokens).values(revoked=True)
        if row.kind == "refresh":
            query = query.where(tokens.c.grant_id == row.grant_id)
        else:
            query = query.where(tokens.c.token_hash == row.token_hash)
        await conn.execute(query)


def principal_for(token_hash: str, conn: Connection) -> Principal:
    """Who holds the access token with this digest; raises the CSC token errors.

    Synchronous, to run inside a store transaction: signHash checks its token in the same
    transaction that spends the SAD (:meth:`rssp.sam.signing.SigningService.sign_in_one_hop`).
    """
    row = _BY_HASH.first(conn, {"h": token_hash})
    if row is None or row["kind"] != "access":
        raise invalid_token()
    if row["revoked"] or row["expires_at"] <= time.time():
        raise expired_token()
    return Principal(
        user_id=row["user_id"], scope=row["scope"], grant_id=row["grant_id"], token_hash=token_hash,
        client_id=row["client_id"], credential_id=row["credential_id"],
    )


async def _rotate(conn: Conn, refresh_token: str, client_id: str | None) -> Any:
    """Revoke a live refresh token of that client (None: of no client) and return its row."""
    client = tokens.c.client_id.is_(None) if client_id is None else tokens.c.client_id == client_id
    statement = (
        update(tokens)
        .where(tokens.c.token_hash == digest(refresh_token), tokens.c.kind == "refresh", client,
               tokens.c.revoked.is_(False), tokens.c.expires_at > time.time())
        .values(revoked=True)
        .returning(tokens.c.user_id, tokens.c.grant_id, tokens.c.scope)
    )
    return (await conn.execute(statement)).first()
