"""Authorization codes: single use, short-lived, bound to client, redirect URI and PKCE challenge.

Only the code's SHA-256 is stored. Redeeming marks it used in the same statement that finds it,
so of two concurrent token requests exactly one wins. A code presented again after it was used
is evidence that it leaked: the tokens it issued are revoked (RFC 6749 §4.1.2), together with
the SAD row of a credential token.

A code for a level-3 credential carries the signer's key-encryption key sealed under a key
derived from the code itself (:func:`rssp.sam.kek.seal`): only the code's holder can have it
sealed on to the access token (:mod:`rssp.oauth.grants`).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import bindparam, select, update

from rssp.audit import record
from rssp.auth.secrets import digest, new_id, new_secret
from rssp.auth.tokens import revoke_grant
from rssp.oauth.request import AuthorizationRequest
from rssp.sam.kek import seal, unseal
from rssp.store import Conn, Store
from rssp.store.schema import oauth_codes


@dataclass(frozen=True)
class RedeemedCode:
    client_id: str
    user_id: str
    request: AuthorizationRequest
    credential_id: str | None
    grant_id: str
    expired: bool
    kek: bytes | None = None  # level 3: unsealed with the code that was presented


def _kek_context(code_hash: str, credential_id: str | None) -> bytes:
    return f"oauth code\0{code_hash}\0{credential_id}".encode()


async def issue_code(conn: Conn, req: AuthorizationRequest, user_id: str, credential_id: str | None,
                     ttl: int, kek: bytes | None = None) -> str:
    """Store a new code for the signer's approved request, in the caller's transaction."""
    value = new_secret()
    code_hash = digest(value)
    now = time.time()
    sealed = seal(value, kek, _kek_context(code_hash, credential_id)) if kek is not None else None
    await conn.execute(oauth_codes.delete().where(oauth_codes.c.expires_at < now - 3600))
    await conn.execute(oauth_codes.insert().values(
        code_hash=code_hash, client_id=req.client_id, user_id=user_id, request=req.to_json(),
        credential_id=credential_id, grant_id=new_id(), used=False, expires_at=now + ttl, created_at=now,
        sealed_kek=sealed,
    ))
    return value


_SPEND = (
    update(oauth_codes)
    .where(oauth_codes.c.code_hash == bindparam("h"), oauth_codes.c.used.is_(False))
    .values(used=True)
    .returning(oauth_codes)
)


async def redeem_code(conn: Conn, code: str, client_ip: str | None) -> RedeemedCode | None:
    """Spend the code in the caller's transaction; None if unknown or already used.

    A replay revokes what the code issued. The caller issues the tokens in the *same*
    transaction, so a concurrent replay waits for them (PostgreSQL row lock, SQLite's single
    writer) and then finds and revokes them.
    """
    if len(code) > 256:
        return None
    code_hash = digest(code)
    row = (await conn.execute(_SPEND, {"h": code_hash})).first()
    if row is not None:
        kek = unseal(code, row.sealed_kek, _kek_context(code_hash, row.credential_id)) if row.sealed_kek else None
        return RedeemedCode(row.client_id, row.user_id, AuthorizationRequest.from_json(row.request),
                            row.credential_id, row.grant_id, row.expires_at <= time.time(), kek)
    replayed = (await conn.execute(select(oauth_codes.c.grant_id, oauth_codes.c.client_id)
                                   .where(oauth_codes.c.code_hash == code_hash))).first()
    if replayed is not None:
        await revoke_grant(conn, replayed.grant_id)
        await record(conn, actor=replayed.client_id, action="oauth.code.replayed", target=replayed.grant_id,
                     outcome="revoked", client_ip=client_ip)
    return None


async def authorized_request(store: Store, grant_id: str) -> AuthorizationRequest | None:
    """The authorization request the signer approved for the tokens of ``grant_id``, or None.

    A code row outlives its tokens' usual lifetime (kept an hour past the code's expiry), so a
    token can be checked against what was approved, e.g. the certificate policy a
    ``credential-creation`` token was given for.
    """
    query = select(oauth_codes.c.request).where(oauth_codes.c.grant_id == grant_id)
    text = await store.query(lambda conn: conn.execute(query).scalar())
    return AuthorizationRequest.from_json(text) if text else None
