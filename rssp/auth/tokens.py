"""Service access tokens (``auth/login``) and refresh tokens, and the one way to revoke them.

One login is one *grant*: an access token and, with ``rememberMe``, a refresh token. Revoking
the refresh token ends the whole grant (its access tokens too); revoking an access token
leaves the refresh token alone (CSC §auth/revoke). Refreshing rotates the refresh token, and a
rotated refresh token presented again is taken as stolen: its whole grant is revoked
(RFC 9700 §4.14.2).

Every revocation — CSC ``auth/revoke``, OAuth ``oauth2/revoke``, a replayed code, a reused
refresh token — goes through :func:`_revoke_where`, which also drops the SAD row (and its bound
hashes) of a credential-scoped OAuth token: such a token is its own SAD
(:func:`rssp.sam.sad.insert_token_sad`) and would otherwise still sign when sent as ``SAD``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, select, update
from sqlalchemy.engine import Connection

from rssp.audit import record
from rssp.auth.secrets import digest, new_id, new_secret
from rssp.config import SecurityConfig
from rssp.errors import expired_token, invalid_request, invalid_token
from rssp.store import Conn, Store
from rssp.store.prepared import Prepared
from rssp.store.schema import sad_hashes, sads, tokens


_BY_HASH = Prepared(select(tokens).where(tokens.c.token_hash == bindparam("h")))  # the hot path


@dataclass(frozen=True)
class Rotated:
    """What a spent refresh token carried: the new pair is issued in the same grant."""

    user_id: str
    grant_id: str
    scope: str


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
    expires_at: float = 0.0  # the access token's, as stored (a credential token's SAD row gets the same)

    def body(self) -> dict[str, object]:
        out: dict[str, object] = {"access_token": self.access_token, "expires_in": self.expires_in}
        if self.refresh_token:
            out["refresh_token"] = self.refresh_token
        return out


class TokenService:
    def __init__(self, store: Store, security: SecurityConfig) -> None:
        self.store = store
        self.security = security

    async def issue(self, conn: Conn, user_id: str, remember: bool, grant_id: str | None = None) -> IssuedTokens:
        """Issue an access token (and a refresh token) in the caller's transaction."""
        refresh_ttl = self.security.refresh_token_ttl_seconds if remember else None
        return await _insert_pair(conn, {"grant_id": grant_id or new_id(), "user_id": user_id, "scope": "service"},
                                  self.security.access_token_ttl_seconds, refresh_ttl)

    async def rotate_refresh(self, conn: Conn, refresh_token: str, client_id: str | None,
                             client_ip: str | None) -> Rotated | None:
        """Spend a refresh token of ``client_id`` (None: of ``auth/login``); None if refused.

        A refresh token that was already spent (rotated or revoked) is evidence that it leaked:
        its grant is revoked here, in the caller's transaction. The caller must therefore let
        the transaction commit and refuse the request *after* it (raising inside would roll
        the revocation back). An OAuth client's token is not accepted by ``auth/login``
        (``client_id`` None): it would lose its client binding.
        """
        row = await _rotate(conn, refresh_token, client_id)
        if row is not None:
            return Rotated(row.user_id, row.grant_id, row.scope)
        await _revoke_if_reused(conn, digest(refresh_token), client_ip)
        return None

    async def issue_scoped(
        self, conn: Conn, *, user_id: str, scope: str, client_id: str, grant_id: str, ttl: int,
        credential_id: str | None = None, refresh_ttl: int | None = None,
    ) -> IssuedTokens:
        """Issue OAuth tokens bound to a client (and, for scope ``credential``, to one credential).

        A refresh token (``refresh_ttl``) shares the grant, so revoking it or replaying the code
        that issued them revokes both (OAuth 2.0 AS, issue 3).
        """
        values = {"grant_id": grant_id, "user_id": user_id, "scope": scope, "client_id": client_id,
                  "credential_id": credential_id}
        return await _insert_pair(conn, values, ttl, refresh_ttl)

    async def authenticate(self, token: str) -> Principal:
        return await self.store.query(partial(principal_for, digest(token)))

    async def revoke(self, conn: Conn, user_id: str, token: str) -> str:
        """CSC ``auth/revoke``: one of the caller's own tokens (see :func:`revoke_token`); its kind."""
        row = await revoke_token(conn, token, tokens.c.user_id == user_id)
        if row is None:  # the hint is only a hint (RFC 7009 §2.1): any type is looked up
            raise invalid_request("Invalid string parameter token")
        return str(row.kind)


async def revoke_token(conn: Conn, token: str, owner: ColumnElement[bool]) -> Any:
    """Revoke a token that ``owner`` selects (the caller's user or client); its row, or None.

    A refresh token takes its whole grant with it; an access token goes alone (its grant's
    refresh token stays usable, CSC §auth/revoke). Either way what the tokens carry goes too.
    """
    if len(token) > 256:
        return None
    token_hash = digest(token)
    row = (await conn.execute(select(tokens).where(tokens.c.token_hash == token_hash, owner))).first()
    if row is None:
        return None
    if row.kind == "refresh":
        await revoke_grant(conn, row.grant_id)
    else:
        await _revoke_where(conn, tokens.c.token_hash == token_hash)
    return row


async def revoke_grant(conn: Conn, grant_id: str) -> None:
    """Revoke every token of a grant (a login, or an OAuth code and its refreshes)."""
    await _revoke_where(conn, tokens.c.grant_id == grant_id)


async def _revoke_where(conn: Conn, where: ColumnElement[bool]) -> None:
    """The one revocation: mark the tokens revoked and drop the SAD rows keyed by their digests.

    Only a credential-scoped OAuth token has such a row; its bound hashes are deleted
    explicitly (SQLite does not enforce the cascade unless told to).
    """
    hashes = (await conn.execute(select(tokens.c.token_hash).where(where))).scalars().all()
    if not hashes:
        return
    await conn.execute(update(tokens).where(tokens.c.token_hash.in_(hashes)).values(revoked=True))
    await conn.execute(delete(sad_hashes).where(sad_hashes.c.sad_hash.in_(hashes)))
    await conn.execute(delete(sads).where(sads.c.sad_hash.in_(hashes)))


async def _revoke_if_reused(conn: Conn, token_hash: str, client_ip: str | None) -> None:
    """A spent refresh token came back: revoke its grant and say so in the audit trail.

    Whichever client or endpoint presents it: a rotated token in anyone's hands means the
    chain leaked, and only revoking the grant cuts off the party that holds the newest token.
    """
    row = (await conn.execute(select(tokens.c.user_id, tokens.c.grant_id, tokens.c.client_id).where(
        tokens.c.token_hash == token_hash, tokens.c.kind == "refresh", tokens.c.revoked.is_(True)))).first()
    if row is None:
        return
    await revoke_grant(conn, row.grant_id)
    detail = {"clientID": row.client_id} if row.client_id else None
    await record(conn, actor=row.user_id, action="token.refresh.reused", target=row.grant_id, outcome="revoked",
                 client_ip=client_ip, detail=detail)


async def _insert_pair(conn: Conn, values: dict[str, Any], ttl: int, refresh_ttl: int | None) -> IssuedTokens:
    """Store a new access token (and a refresh token) of one grant; only their digests are kept."""
    now = time.time()
    values = {**values, "revoked": False, "created_at": now}
    access, expires_at = new_secret(), now + ttl
    await conn.execute(tokens.insert().values(token_hash=digest(access), kind="access", expires_at=expires_at,
                                              **values))
    refresh = None
    if refresh_ttl:
        refresh = new_secret()
        await conn.execute(tokens.insert().values(token_hash=digest(refresh), kind="refresh",
                                                  expires_at=now + refresh_ttl, **values))
    return IssuedTokens(access, ttl, refresh, expires_at)


def principal_for(token_hash: str, conn: Connection) -> Principal:
    """Who holds the access token with this digest; raises the CSC token errors.

    Synchronous, to run inside a store transaction: signHash checks its token in the same
    transaction that spends the SAD (:func:`rssp.sam.sad.check_caller`).
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
