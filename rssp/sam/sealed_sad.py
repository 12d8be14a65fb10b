"""Level-3 SADs: the SAM verifies each row's MAC on every use and rewrites it with every change.

A level-3 SAD row carries an HSM MAC over its whole state (:mod:`rssp.sam.sad_state`) and the
signer's KEK sealed under a key derived from the SAD value (:func:`rssp.sam.kek.seal`). Every
use — spend, give-back, extend — reads the row, then in ONE hop to the HSM verifies the MAC of
what it read and computes the MAC of the state it is about to write, then writes that state
with a conditional update that succeeds only if the row still holds what was read (its count
and MAC). The HSM lives on one thread and the database on another, so the row is never held
locked across the HSM hop: a concurrent use makes the update match nothing, and the attempt
starts over from a fresh read (optimistic concurrency, at most :data:`MAX_ATTEMPTS` times).

A row whose MAC does not match — edited in the database — is refused as ``Invalid parameter
SAD`` before anything is checked or granted, and audited as ``sad.tamper`` (never with the SAD).
Levels 1 and 2 keep their one-hop path in :mod:`rssp.sam.sad`; its statements never touch a
MACed row.
"""

from __future__ import annotations

import asyncio
import random
import time
from dataclasses import dataclass
from functools import partial
from typing import Any, NoReturn

from sqlalchemy import delete, exists, update
from sqlalchemy.engine import Connection

from rssp.audit import record, write_record
from rssp.auth.secrets import digest, new_secret
from rssp.errors import CSCError, invalid_request, invalid_sad, unknown_credential
from rssp.hsm import Hsm
from rssp.sam.kek import seal, unseal
from rssp.sam.sad import SadGrant, Spend, TokenCheck, carry_over, check_caller, hold_credential, sad_inserts
from rssp.sam.sad_state import SadState, StoredSad, mac_matches, mac_states, new_state, read_sad, state_columns
from rssp.store import Conn, Store
from rssp.store.schema import credentials, sads

MAX_ATTEMPTS = 8  # conditional writes that lost a race before the request gives up (503)
_NOT_AUTHORIZED = "Hash is not authorized by the SAD."


class _Conflict(Exception):
    """The row changed between the read and the conditional write."""


def _busy() -> CSCError:
    return CSCError(503, "temporarily_unavailable", "The SAD is in use by concurrent requests; retry",
                    headers={"Retry-After": "1"})


def _context(sad_hash: str, credential_id: str) -> bytes:
    """What a sealed KEK is bound to: this SAD, this credential."""
    return f"{sad_hash}\0{credential_id}".encode()


async def _backoff(attempt: int) -> None:
    await asyncio.sleep(random.uniform(0, 0.002 * (attempt + 1)))  # noqa: S311 - jitter, not a secret


# --- issuing -----------------------------------------------------------------------------------

@dataclass(frozen=True)
class NewSad:
    """A level-3 SAD ready to be stored: its value and the statements (row with MAC, hashes)."""

    value: str
    statements: list[tuple[Any, Any]]

    async def insert(self, conn: Conn) -> None:
        for statement, params in self.statements:
            await conn.execute(statement, params)

    def insert_sync(self, conn: Connection) -> None:
        for statement, params in self.statements:
            conn.execute(statement, params)


def _draft(grant: SadGrant, kek: bytes, expires_at: float, not_after: float,
           value: str | None = None) -> tuple[str, SadState]:
    """A new SAD value (or ``value``) and the state it starts in, the KEK sealed to it."""
    value = value or new_secret()
    sad_hash, expires_at = digest(value), min(expires_at, not_after)
    sealed = seal(value, kek, _context(sad_hash, grant.credential_id))
    return value, new_state(sad_hash, grant.user_id, grant.credential_id, grant.count, grant.hash_algo,
                            grant.digests, expires_at, not_after, sealed)


def _finish(grant: SadGrant, value: str, state: SadState, mac: bytes) -> NewSad:
    if state.not_after is None:  # _draft always sets it: a level-3 SAD has a maximum lifetime
        raise ValueError("a new level-3 SAD without its maximum lifetime")
    _value, statements = sad_inserts(grant, state.expires_at, state.not_after, value,
                                     extra=state_columns(state, mac))
    return NewSad(value, statements)


async def prepare_sad(hsm: Hsm, grant: SadGrant, kek: bytes, expires_at: float, not_after: float,
                      value: str | None = None) -> NewSad:
    """A new SAD (or ``value``, a credential token) for ``grant``: the KEK sealed to it, its MAC."""
    value, state = _draft(grant, kek, expires_at, not_after, value)
    (mac,) = await mac_states(hsm, [state])
    return _finish(grant, value, state, mac)


async def issue_sad(hsm: Hsm, grant: SadGrant, kek: bytes, ttl_seconds: int, max_lifetime_seconds: int) -> NewSad:
    """:func:`rssp.sam.sad.insert_sad` for level 3; the caller inserts it in its transaction."""
    now = time.time()
    return await prepare_sad(hsm, grant, kek, now + ttl_seconds, now + max(ttl_seconds, max_lifetime_seconds))


async def insert_token_sad_sealed(conn: Conn, hsm: Hsm, access_token: str, grant: SadGrant, expires_at: float,
                                  kek: bytes) -> None:
    """:func:`rssp.sam.sad.insert_token_sad` for level 3: the token is the SAD the KEK is sealed to."""
    await (await prepare_sad(hsm, grant, kek, expires_at, expires_at, access_token)).insert(conn)


# --- verifying ---------------------------------------------------------------------------------

async def _verified(store: Store, found: StoredSad, computed: bytes, spend: Spend) -> None:
    """Raise unless the row's MAC is the one the HSM computed for what was read."""
    if found.mac is None and found.state.credential_id != spend.credential_id:
        raise invalid_sad()  # a level-1/2 SAD of another credential: a mistake, not an edit
    if not mac_matches(found.mac, computed):
        await _tampered(store, spend, "mac")


async def _tampered(store: Store, spend: Spend, check: str) -> NoReturn:
    """Refuse an edited row; audited as ``sad.tamper``."""
    async with store.write() as conn:
        await record(conn, actor=spend.user_id, action="sad.tamper", target=spend.credential_id,
                     outcome="refused", client_ip=spend.client_ip, detail={"check": check})
    raise invalid_sad()


def _check_live(found: StoredSad, user_id: str, credential_id: str) -> None:
    st = found.state
    if st.user_id != user_id or st.credential_id != credential_id:
        raise invalid_sad()
    if st.expires_at <= time.time():
        raise invalid_request("SAD expired")
    if st.remaining <= 0:
        raise invalid_sad()


def _check_spend(found: StoredSad, spend: Spend) -> None:
    """The same refusals, in the same order, as the level-1/2 spend (:mod:`rssp.sam.sad`)."""
    _check_live(found, spend.user_id, spend.credential_id)
    st, n = found.state, len(spend.digests)
    if st.remaining < n:
        raise invalid_request("The number of hashes exceeds the number of signatures authorized by the SAD")
    if found.credential_status in (None, "deleted"):
        raise unknown_credential()
    if found.credential_status != "enabled":
        raise invalid_request("The credential identified by credentialID is disabled")
    if st.bound and (st.hash_algo != spend.hash_algo or len(set(spend.digests)) != n
                     or not st.all_unused(spend.digests)):
        raise invalid_request(_NOT_AUTHORIZED)


async def _kek(store: Store, sad: str, found: StoredSad, spend: Spend) -> bytes:
    st = found.state
    kek = unseal(sad, st.sealed_kek, _context(st.sad_hash, st.credential_id))
    if kek is None:  # cannot happen to a row whose MAC holds, unless the SAM itself was bypassed
        await _tampered(store, spend, "kek")
    return kek


# --- writing -----------------------------------------------------------------------------------

def _swap(conn: Connection, found: StoredSad, after: SadState, mac: bytes, *, enabled: bool) -> None:
    """Write ``after`` (count, used hashes) and its MAC if the row is still what was read (its
    count and MAC); else :class:`_Conflict`."""
    st = found.state
    query = update(sads).where(sads.c.sad_hash == st.sad_hash, sads.c.mac == found.mac,
                               sads.c.remaining == st.remaining)
    if enabled:
        query = query.where(exists().where(credentials.c.id == st.credential_id, credentials.c.status == "enabled"))
    if conn.execute(query.values(remaining=after.remaining, used_map=after.used_map(), mac=mac)).rowcount != 1:
        raise _Conflict()


def _commit_spend(found: StoredSad, after: SadState, mac: bytes, spend: Spend, conn: Connection) -> None:
    _swap(conn, found, after, mac, enabled=True)
    write_record(conn, actor=spend.user_id, action="signature.sign", target=spend.credential_id,
                 outcome="authorized", client_ip=spend.client_ip,
                 detail={"hashAlgo": spend.hash_algo, "hashes": [d.hex() for d in spend.digests]})


def _commit_refund(found: StoredSad, after: SadState, mac: bytes, spend: Spend, conn: Connection) -> None:
    _swap(conn, found, after, mac, enabled=False)
    write_record(conn, actor=spend.user_id, action="signature.giveback", target=spend.credential_id, outcome="ok",
                 client_ip=spend.client_ip, detail={"hashes": [d.hex() for d in spend.digests]})


# --- the three uses ----------------------------------------------------------------------------

@dataclass(frozen=True)
class Unlocked:
    """What a level-3 spend yields to sign with: the signer's KEK and the wrapped key.

    The wrapped key is the one the spend read beside the SAD, never a process's cached copy:
    ``credentials/changePIN`` re-wraps it, and a SAD issued after the change carries the new
    KEK, which only the new blob opens (:mod:`rssp.credentials.pin_change`).
    """

    kek: bytes
    wrapped_key: bytes | None


def _read_checked(sad_hash: str, spend: Spend, caller: TokenCheck | None, conn: Connection) -> StoredSad | None:
    if caller is not None:
        check_caller(caller, spend, conn)
    return read_sad(sad_hash, conn)


async def spend_sealed(store: Store, hsm: Hsm, sad: str, spend: Spend, caller: TokenCheck | None = None) -> Unlocked:
    """Reserve ``spend.digests`` of a level-3 SAD, all or none; the signer's KEK and key to sign them with.

    Refusals are those of :func:`rssp.sam.sad.spend_sad`, after the MAC has held. ``caller``
    (signHash's Bearer token) is checked in the read, before anything else
    (:func:`rssp.sam.sad.check_caller`).
    """
    sad_hash = digest(sad)
    for attempt in range(MAX_ATTEMPTS):
        found = await store.query(partial(_read_checked, sad_hash, spend, caller))
        if found is None:
            raise invalid_sad()
        after = found.state.spent(spend.digests)
        now_mac, after_mac = await mac_states(hsm, [found.state, after])
        await _verified(store, found, now_mac, spend)
        _check_spend(found, spend)
        kek = await _kek(store, sad, found, spend)
        try:
            await store.transaction(partial(_commit_spend, found, after, after_mac, spend))
            return Unlocked(kek, found.wrapped_key)
        except _Conflict:
            await _backoff(attempt)
    raise _busy()


async def refund_sealed(store: Store, hsm: Hsm, sad: str, spend: Spend) -> None:
    """:func:`rssp.sam.sad.refund_sad` for level 3: what ``spend`` reserved comes back, if the
    SAD still lives and its MAC holds (an edited row is audited and gets nothing back)."""
    sad_hash = digest(sad)
    for attempt in range(MAX_ATTEMPTS):
        found = await store.query(partial(read_sad, sad_hash))
        if found is None:
            return
        after = found.state.refunded(spend.digests)
        now_mac, after_mac = await mac_states(hsm, [found.state, after])
        try:
            await _verified(store, found, now_mac, spend)
            _check_live(found, spend.user_id, spend.credential_id)
        except CSCError:
            return  # the signatures were not delivered anyway; nothing to give back to
        try:
            await store.transaction(partial(_commit_refund, found, after, after_mac, spend))
            return
        except _Conflict:
            await _backoff(attempt)
    raise _busy()


async def extend_sealed(store: Store, hsm: Hsm, sad: str, asked: SadGrant, ttl_seconds: int,
                        client_ip: str | None) -> tuple[str, int]:
    """:func:`rssp.sam.sad.extend_sad` for level 3: the same carry-over rules; the KEK is
    re-sealed under the new SAD, which gets its own MAC; the old row goes only if its MAC held."""
    old_hash = digest(sad)
    as_spend = Spend(asked.user_id, asked.credential_id, "", (), client_ip)
    for attempt in range(MAX_ATTEMPTS):
        found = await store.query(partial(read_sad, old_hash))
        if found is None:
            raise invalid_sad()
        st, now = found.state, time.time()
        planned = _carried_over(found, asked)
        kek = unseal(sad, st.sealed_kek, _context(st.sad_hash, st.credential_id))
        new, old_mac = await _with_successor(hsm, found, planned, kek, now + ttl_seconds)
        await _verified(store, found, old_mac, as_spend)
        if found.is_token:  # a credential token's grant is the token's (see rssp.sam.sad._extend)
            raise invalid_sad()
        _check_live(found, asked.user_id, asked.credential_id)
        if isinstance(planned, CSCError):
            raise planned
        if new is None:
            await _tampered(store, as_spend, "kek")
        try:
            await store.transaction(partial(_commit_extend, found, new, planned, client_ip))
        except _Conflict:
            await _backoff(attempt)
            continue
        return new.value, max(1, int(min(now + ttl_seconds, st.not_after or now) - now))
    raise _busy()


def _carried_over(found: StoredSad, asked: SadGrant) -> SadGrant | CSCError:
    """What the new SAD carries (never more than the old one has left). Computed before the MAC
    hop so that one hop serves both; a refusal is returned, and raised only once the MAC held."""
    st = found.state
    try:
        return carry_over(asked, st.remaining, st.hash_algo, st.unused if st.bound else None)
    except CSCError as refused:
        return refused


async def _with_successor(hsm: Hsm, found: StoredSad, planned: SadGrant | CSCError, kek: bytes | None,
                          expires_at: float) -> tuple[NewSad | None, bytes]:
    """The new SAD (None if there is none to issue) and the MAC of the old state: one HSM hop."""
    not_after = found.state.not_after
    if isinstance(planned, CSCError) or kek is None or not_after is None:
        return None, (await mac_states(hsm, [found.state]))[0]
    value, state = _draft(planned, kek, expires_at, not_after)
    old_mac, mac = await mac_states(hsm, [found.state, state])
    return _finish(planned, value, state, mac), old_mac


def _commit_extend(found: StoredSad, new: NewSad, grant: SadGrant, client_ip: str | None,
                   conn: Connection) -> None:
    st = found.state
    hold_credential(conn, grant.credential_id)  # a concurrent PIN change deletes the new SAD or finds none
    gone = conn.execute(delete(sads).where(sads.c.sad_hash == st.sad_hash, sads.c.mac == found.mac,
                                           sads.c.remaining == st.remaining))
    if gone.rowcount != 1:
        raise _Conflict()
    new.insert_sync(conn)
    write_record(conn, actor=grant.user_id, action="sad.extend", target=grant.credential_id, outcome="ok",
                 client_ip=client_ip, detail={"remaining": grant.count, "hashes": [d.hex() for d in grant.digests]})
