"""One-time codes sent out of band: random, short-lived, single-use, stored only as an HSM MAC.

A code is ``code_digits`` random digits (``secrets``), valid ``code_ttl_seconds``, spent by
its first successful use. The database holds ``HMAC_K(credential, user, binding, code)`` with
K an HSM key (:mod:`rssp.factors.keys`): a copy of the database can neither read a code nor
test guesses offline. The binding is the digest of the hashes being authorized (SCAL 2
always, SCAL 1 when the client gave hashes), so a code works only for that credential, that
user and those hashes; any other use is a wrong factor, counted toward the credential's lockout
by :func:`rssp.sam.factors.check_factors` like a wrong PIN.

Sending is rate-limited per credential and per user (``[oob]``): every code and approval link
sent is a row here, counted inside the transaction that adds the next one, with the
credential's and the user's rows locked (PostgreSQL; SQLite's writers are serial anyway), so
concurrent requests in any number of processes cannot send more than the limit.
"""

from __future__ import annotations

import hashlib
import hmac
import math
import secrets
import time
from dataclasses import dataclass

from sqlalchemy import delete, func, select, update

from rssp.auth.secrets import new_id
from rssp.errors import CSCError
from rssp.factors.keys import OOB_MAC_KEY, hsm_mac
from rssp.factors.settings import OobSettings
from rssp.hsm import Hsm
from rssp.store import Conn, Store
from rssp.store.schema import credentials, users
from rssp.store.schema_factors import oob_codes


class SendLimited(CSCError):
    """429: the credential or the user had as many codes and links as the window allows."""

    def __init__(self, retry_after: int) -> None:
        super().__init__(429, "temporarily_unavailable", "Too many one-time passwords were sent; try again later",
                         headers={"Retry-After": str(retry_after)})


@dataclass(frozen=True)
class Binding:
    """The hashes an authorization is for (empty: a level-1 authorization without hashes)."""

    hash_name: str | None = None
    digests: tuple[bytes, ...] = ()

    def digest(self) -> str:
        if not self.digests:
            return ""
        data = (self.hash_name or "").encode() + b"\0" + b"".join(sorted(self.digests))
        return hashlib.sha256(data).hexdigest()


def new_code(digits: int) -> str:
    return "".join(secrets.choice("0123456789") for _ in range(digits))


def _message(credential_id: str, user_id: str, binding: str, code: str) -> bytes:
    return f"rssp oob code v1\0{credential_id}\0{user_id}\0{binding}\0{code}".encode()


async def reserve_send(store: Store, oob: OobSettings, credential_id: str, user_id: str, kind: str,
                       code_mac: str, ttl: int) -> str:
    """Record one code or link about to be sent, within the rate limits; its row ID. Raises :class:`SendLimited`."""
    now = time.time()
    row_id = new_id()
    async with store.write() as conn:
        await _lock(conn, credential_id, user_id)
        since = now - oob.send_window_seconds
        await conn.execute(delete(oob_codes).where(oob_codes.c.credential_id == credential_id,
                                                   oob_codes.c.created_at < since, oob_codes.c.expires_at < now))
        per_cred, per_user, oldest = (await conn.execute(select(
            func.count().filter(oob_codes.c.credential_id == credential_id),
            func.count(), func.min(oob_codes.c.created_at),
        ).where(oob_codes.c.user_id == user_id, oob_codes.c.created_at >= since))).first()
        if per_cred >= oob.sends_per_credential or per_user >= oob.sends_per_user:
            raise SendLimited(max(1, math.ceil((oldest or now) + oob.send_window_seconds - now)))
        await conn.execute(oob_codes.insert().values(
            id=row_id, credential_id=credential_id, user_id=user_id, kind=kind, code_mac=code_mac, used=False,
            expires_at=now + ttl, created_at=now))
    return row_id


async def _lock(conn: Conn, credential_id: str, user_id: str) -> None:
    """Serialise sends for one user and credential across processes (a no-op on SQLite)."""
    await conn.execute(select(users.c.id).where(users.c.id == user_id).with_for_update())
    await conn.execute(select(credentials.c.id).where(credentials.c.id == credential_id).with_for_update())


async def issue_code(store: Store, hsm: Hsm, oob: OobSettings, credential_id: str, user_id: str,
                     binding: Binding) -> tuple[str, str]:
    """A new code for the credential and user, bound to ``binding``: (code, row ID). Raises :class:`SendLimited`."""
    code = new_code(oob.code_digits)
    mac = (await _macs(hsm, credential_id, user_id, [binding.digest()], code))[0]
    row_id = await reserve_send(store, oob, credential_id, user_id, "code", mac, oob.code_ttl_seconds)
    return code, row_id


async def burn(store: Store, row_id: str) -> None:
    """Make a code unusable (it could not be delivered); it still counts toward the send limit."""
    async with store.write() as conn:
        await conn.execute(update(oob_codes).where(oob_codes.c.id == row_id).values(used=True))


async def _macs(hsm: Hsm, credential_id: str, user_id: str, bindings: list[str], code: str) -> list[str]:
    return [(await hsm_mac(hsm, OOB_MAC_KEY, _message(credential_id, user_id, b, code))).hex() for b in bindings]


async def spend_code(store: Store, hsm: Hsm, credential_id: str, user_id: str, binding: Binding, code: str,
                     allow_unbound: bool) -> bool:
    """Whether ``code`` is a live code of this credential and user for ``binding``; spends it if so.

    ``allow_unbound``: a level-1 code asked for without hashes also covers an authorization with hashes.
    """
    if not (code.isascii() and code.isdigit() and 6 <= len(code) <= 10):
        return False
    bindings = [binding.digest()] + ([""] if allow_unbound and binding.digests else [])
    wanted = await _macs(hsm, credential_id, user_id, bindings, code)
    now = time.time()
    async with store.read() as conn:
        rows = (await conn.execute(select(oob_codes.c.id, oob_codes.c.code_mac).where(
            oob_codes.c.credential_id == credential_id, oob_codes.c.user_id == user_id, oob_codes.c.kind == "code",
            oob_codes.c.used.is_(False), oob_codes.c.expires_at > now))).all()
    match = next((r.id for r in rows if any(hmac.compare_digest(r.code_mac, w) for w in wanted)), None)
    if match is None:
        return False
    async with store.write() as conn:  # single use: of two requests with the same code, one wins
        result = await conn.execute(update(oob_codes).where(
            oob_codes.c.id == match, oob_codes.c.used.is_(False), oob_codes.c.expires_at > now).values(used=True))
    return bool(result.rowcount == 1)
