"""Signature Activation Data: issuing, spending and extending it.

A SAD is a 256-bit random string given to the client once and stored only as its SHA-256.
It is bound to one user, one credential, a number of signatures and an expiry, and (when the
client named them, always at level 2) to the exact hashes and hash algorithm. Spending happens
in one write transaction that decrements the count and marks every hash of the batch used,
or does nothing: two requests, in one process or in two, can never both spend the same
signature. The audit record of the spend is written in that same transaction.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import Any

from sqlalchemy import ColumnElement, bindparam, delete, exists, select, update
from sqlalchemy.engine import Connection

from rssp import metrics
from rssp.audit import write_record
from rssp.auth.secrets import digest, new_secret
from rssp.auth.tokens import principal_for
from rssp.errors import CSCError, invalid_request, invalid_sad, unknown_credential, wrong_scope
from rssp.store import Conn, Store
from rssp.store.prepared import Prepared
from rssp.store.schema import credentials, sad_hashes, sads, tokens


@dataclass(frozen=True)
class SadGrant:
    """What the client may do with a SAD: sign ``count`` times, optionally only these digests."""

    user_id: str
    credential_id: str
    count: int
    hash_algo: str | None = None
    digests: tuple[bytes, ...] = ()

    @property
    def bound(self) -> bool:
        return bool(self.digests)


def sad_inserts(grant: SadGrant, expires_at: float, not_after: float, value: str | None = None,
                extra: dict[str, Any] | None = None) -> tuple[str, list[tuple[Any, Any]]]:
    """A new SAD value (or ``value``) and the statements that store it (its hash, and its bound digests).

    ``not_after`` is the end of the whole transaction: no SAD extended from this one lives past it.
    ``extra``: more column values (a level-3 SAD's MAC and sealed KEK, :mod:`rssp.sam.sealed_sad`).
    """
    value = value or new_secret()
    sad_hash = digest(value)
    statements: list[tuple[Any, Any]] = [(
        sads.insert().values(
            sad_hash=sad_hash, credential_id=grant.credential_id, user_id=grant.user_id,
            remaining=grant.count, expires_at=min(expires_at, not_after), not_after=not_after,
            hash_algo=grant.hash_algo, bound=grant.bound, created_at=time.time(), **(extra or {}),
        ),
        None,
    )]
    if grant.digests and not (extra and "digests" in extra):  # a level-3 row keeps its digests itself
        rows = [{"sad_hash": sad_hash, "digest": d, "used": False} for d in grant.digests]
        statements.append((sad_hashes.insert(), rows))
    return value, statements


async def insert_sad(conn: Conn, grant: SadGrant, ttl_seconds: int, max_lifetime_seconds: int) -> str:
    """Store a new SAD for ``grant`` in the caller's transaction and return its value.

    The SAD expires after ``ttl_seconds``; extending it can go on for ``max_lifetime_seconds``
    from now, never longer.
    """
    now = time.time()
    value, statements = sad_inserts(grant, now + ttl_seconds, now + max(ttl_seconds, max_lifetime_seconds))
    for statement, params in statements:
        await conn.execute(statement, params)
    return value


@dataclass(frozen=True)
class Spend:
    """One signing request against a SAD."""

    user_id: str
    credential_id: str
    hash_algo: str
    digests: tuple[bytes, ...]
    client_ip: str | None


def _live(sad_hash: str, user_id: str, credential_id: str) -> tuple[ColumnElement[bool], ...]:
    """The SAD row is this one, for this user and credential, not expired, and not level 3 (MACed)."""
    return (
        sads.c.sad_hash == sad_hash,
        sads.c.user_id == user_id,
        sads.c.credential_id == credential_id,
        sads.c.expires_at > time.time(),
        sads.c.mac.is_(None),
    )


@dataclass(frozen=True)
class TokenCheck:
    """The Bearer token of a signHash call, checked in the transaction that spends its SAD (one hop)."""

    token: str
    scopes: frozenset[str]


class CallerRefused(Exception):
    """The token checked in a spend's transaction refused the caller; nothing was spent.

    Not a :class:`CSCError`: it is neither counted nor audited as a refused signing attempt,
    since the request is refused as a token at the door is (``error`` is what the client gets).
    """

    def __init__(self, error: CSCError) -> None:
        super().__init__(error.description)
        self.error = error


async def spend_sad(store: Store, sad: str, spend: Spend, then: Callable[[Connection], object] | None = None,
                    caller: TokenCheck | None = None) -> None:
    """Reserve ``len(digests)`` signatures of the SAD, all or none, and audit the reservation.

    The whole transaction runs as one synchronous function: on SQLite that is one hop to the
    database thread, so the process's write lock is held as briefly as possible. ``caller``
    is checked first in it (:func:`check_caller`). ``then`` runs in the same transaction after
    a successful spend (an asynchronous job's row).
    """
    steps: list[Callable[[Connection], object]] = [partial(_spend, digest(sad), spend)]
    if caller is not None:
        steps.insert(0, partial(check_caller, caller, spend))
    if then is not None:
        steps.append(then)
    try:
        await store.transaction(steps[0] if len(steps) == 1 else partial(_in_turn, steps))
    except CSCError:
        metrics.m().sad.labels("refused").inc()
        raise
    metrics.m().sad.labels("spent").inc()


def _in_turn(steps: list[Callable[[Connection], object]], conn: Connection) -> None:
    for step in steps:
        step(conn)


def check_caller(caller: TokenCheck, spend: Spend, conn: Connection) -> None:
    """Raise :class:`CallerRefused` unless the token is a live access token of ``spend``'s user
    with one of the caller's scopes (a credential-scoped one only for ``spend``'s credential).

    In the caller's transaction: signHash's token is checked where its SAD is spent. Someone
    else's credential looks unknown, as it does to every other method.
    """
    try:
        principal = principal_for(digest(caller.token), conn)
    except CSCError as refused:
        raise CallerRefused(refused) from None
    if principal.scope not in caller.scopes:
        raise CallerRefused(wrong_scope())
    if principal.user_id != spend.user_id:
        raise CallerRefused(unknown_credential())
    if principal.scope == "credential" and principal.credential_id != spend.credential_id:
        raise CallerRefused(unknown_credential())


# Built once: constructing a Core statement costs more Python time than SQLite takes to run it.
# Bind names must differ from column names (an UPDATE would read them as SET values).
_SPEND = Prepared(
    update(sads)
    .where(
        sads.c.sad_hash == bindparam("h"),
        sads.c.user_id == bindparam("u"),
        sads.c.credential_id == bindparam("c"),
        sads.c.expires_at > bindparam("now"),
        sads.c.remaining >= bindparam("n"),
        sads.c.mac.is_(None),  # a level-3 row is spent only by rssp.sam.sealed_sad, which checks its MAC
        exists().where(credentials.c.id == bindparam("c"), credentials.c.status == "enabled"),
    )
    .values(remaining=sads.c.remaining - bindparam("n"))
    .returning(sads.c.bound, sads.c.hash_algo)
)
_SPEND_HASHES = (  # PostgreSQL: the whole batch in one statement
    update(sad_hashes)
    .where(
        sad_hashes.c.sad_hash == bindparam("h"),
        sad_hashes.c.digest.in_(bindparam("ds", expanding=True)),
        sad_hashes.c.used.is_(False),
    )
    .values(used=True)
)
_SPEND_ONE_HASH = Prepared(  # SQLite: one prepared statement per digest, no network in between
    update(sad_hashes)
    .where(sad_hashes.c.sad_hash == bindparam("h"), sad_hashes.c.digest == bindparam("d"),
           sad_hashes.c.used.is_(False))
    .values(used=True)
)


def _spend(sad_hash: str, spend: Spend, conn: Connection) -> None:
    n = len(spend.digests)
    params = {"h": sad_hash, "u": spend.user_id, "c": spend.credential_id, "now": time.time(), "n": n}
    row = _SPEND.first(conn, params)
    if row is None:
        raise _why_not_spendable(conn, sad_hash, spend.user_id, spend.credential_id, n)
    if row["bound"]:
        _spend_bound_hashes(conn, sad_hash, row["hash_algo"], spend)
    write_record(
        conn, actor=spend.user_id, action="signature.sign", target=spend.credential_id, outcome="authorized",
        client_ip=spend.client_ip, detail={"hashAlgo": spend.hash_algo, "hashes": [d.hex() for d in spend.digests]},
    )


def _spend_bound_hashes(conn: Connection, sad_hash: str, hash_algo: str | None, spend: Spend) -> None:
    """Mark each requested digest used; any digest not authorized (or already used) aborts all."""
    if hash_algo != spend.hash_algo or len(set(spend.digests)) != len(spend.digests):
        raise invalid_request("Hash is not authorized by the SAD.")
    if _mark_used(conn, sad_hash, spend.digests) != len(spend.digests):
        raise invalid_request("Hash is not authorized by the SAD.")


def _mark_used(conn: Connection, sad_hash: str, digests: tuple[bytes, ...]) -> int:
    """Mark the SAD's unused digests among ``digests`` used; how many were."""
    if conn.dialect.name == "sqlite":
        return sum(_SPEND_ONE_HASH.run(conn, {"h": sad_hash, "d": d}) for d in digests)
    return int(conn.execute(_SPEND_HASHES, {"h": sad_hash, "ds": list(digests)}).rowcount)


def _why_not_spendable(conn: Connection, sad_hash: str, user_id: str, credential_id: str, n: int) -> Exception:
    """Pick the error for a failed spend; only reached on the failure path."""
    row = conn.execute(select(sads).where(sads.c.sad_hash == sad_hash)).first()
    if row is None or row.user_id != user_id or row.credential_id != credential_id or row.mac is not None:
        return invalid_sad()
    if row.expires_at <= time.time():
        return invalid_request("SAD expired")
    if row.remaining == 0:
        return invalid_sad()
    if row.remaining < n:
        return invalid_request("The number of hashes exceeds the number of signatures authorized by the SAD")
    status = conn.execute(select(credentials.c.status).where(credentials.c.id == credential_id)).scalar()
    if status in (None, "deleted"):  # deleted since the caller looked it up: it is unknown now
        return unknown_credential()
    return invalid_request("The credential identified by credentialID is disabled")


async def refund_sad(store: Store, sad: str, spend: Spend) -> None:
    """Undo a spend whose signatures were never delivered (see :func:`rssp.sam.documents.give_back`).

    Only what ``spend`` reserved comes back: the count, and the bound digests among those it
    marked used. A SAD that expired or was deleted meanwhile stays gone.
    """
    await store.transaction(partial(_refund, digest(sad), spend))


def _refund(sad_hash: str, spend: Spend, conn: Connection) -> None:
    row = conn.execute(
        update(sads).where(*_live(sad_hash, spend.user_id, spend.credential_id))
        .values(remaining=sads.c.remaining + len(spend.digests)).returning(sads.c.bound)
    ).first()
    if row is None:
        return
    if row.bound:
        conn.execute(update(sad_hashes).where(sad_hashes.c.sad_hash == sad_hash,
                                              sad_hashes.c.digest.in_(list(spend.digests))).values(used=False))
    write_record(conn, actor=spend.user_id, action="signature.giveback", target=spend.credential_id, outcome="ok",
                 client_ip=spend.client_ip, detail={"hashes": [d.hex() for d in spend.digests]})


async def extend_sad(store: Store, sad: str, grant: SadGrant, ttl_seconds: int,
                     client_ip: str | None) -> tuple[str, int]:
    """Consume an unexpired SAD and issue a new one for what it had left; the new value and its lifetime.

    ``grant`` holds what the client asked for. The new SAD never carries more than the old one
    had left: the same user, credential and hash algorithm, at most its remaining count, and,
    when the old SAD was bound to hashes, only hashes among its unspent ones (#20: replacing
    them let a client get a hash signed that the signer never authorized). Its expiry never
    passes the transaction's ``not_after``, so extending cannot keep a SAD alive for ever.
    """
    return await store.transaction(partial(_extend, digest(sad), grant, ttl_seconds, client_ip))


def hold_credential(conn: Connection, credential_id: str) -> None:
    """Share-lock the credential's row (PostgreSQL) before an extension replaces a SAD.

    A concurrent ``credentials/changePIN`` updates that row and then deletes the credential's
    SADs: it either waits for the extension and deletes the SAD it made, or comes first, and
    then the old SAD is gone. Without the lock its delete could miss a SAD committed meanwhile.
    """
    conn.execute(select(credentials.c.id).where(credentials.c.id == credential_id).with_for_update(read=True))


def _extend(old_hash: str, grant: SadGrant, ttl_seconds: int, client_ip: str | None,
            conn: Connection) -> tuple[str, int]:
    hold_credential(conn, grant.credential_id)
    if conn.execute(select(tokens.c.token_hash).where(tokens.c.token_hash == old_hash)).first() is not None:
        # A credential token's grant is the token's: a SAD made from it would outlive its revocation.
        raise invalid_sad()
    # Read before the delete: deleting the SAD cascades to its hashes.
    unused = conn.execute(
        select(sad_hashes.c.digest).where(sad_hashes.c.sad_hash == old_hash, sad_hashes.c.used.is_(False))
    ).scalars().all()
    now = time.time()
    row = conn.execute(
        delete(sads)
        .where(*_live(old_hash, grant.user_id, grant.credential_id), sads.c.remaining > 0,
               sads.c.not_after > now)
        .returning(sads.c.remaining, sads.c.hash_algo, sads.c.bound, sads.c.not_after)
    ).first()
    if row is None:
        raise _why_not_spendable(conn, old_hash, grant.user_id, grant.credential_id, 0)
    conn.execute(delete(sad_hashes).where(sad_hashes.c.sad_hash == old_hash))
    new_grant = carry_over(grant, row.remaining, row.hash_algo, tuple(unused) if row.bound else None)
    value, statements = sad_inserts(new_grant, now + ttl_seconds, row.not_after)
    for statement, params in statements:
        conn.execute(statement, params)
    write_record(conn, actor=grant.user_id, action="sad.extend", target=grant.credential_id, outcome="ok",
                 client_ip=client_ip, detail={"remaining": new_grant.count,
                                              "hashes": [d.hex() for d in new_grant.digests]})
    return value, max(1, int(min(now + ttl_seconds, row.not_after) - now))


def carry_over(asked: SadGrant, remaining: int, hash_algo: str | None, unused: tuple[bytes, ...] | None) -> SadGrant:
    """The new SAD's grant: never wider than the old one. ``unused`` is None when it was not bound.

    A bound SAD keeps its unspent hashes, or narrows to those of them the client names; an
    unbound one may be narrowed to hashes. Anything else is refused and nothing is consumed.
    """
    user, credential = asked.user_id, asked.credential_id
    if unused is not None:
        if not unused:
            raise invalid_sad()
        if not asked.digests:
            return SadGrant(user, credential, min(remaining, len(unused)), hash_algo, unused)
        if asked.hash_algo != hash_algo or not set(asked.digests) <= set(unused):
            raise invalid_request("Hash is not authorized by the SAD.")
        return SadGrant(user, credential, min(remaining, len(asked.digests)), hash_algo, asked.digests)
    if asked.digests:
        if len(asked.digests) > remaining:
            raise invalid_request("Numbers of signatures is too high")
        return SadGrant(user, credential, len(asked.digests), asked.hash_algo, asked.digests)
    return SadGrant(user, credential, remaining)


async def insert_token_sad(conn: Conn, access_token: str, grant: SadGrant, expires_at: float) -> None:
    """Make a credential-scoped OAuth access token its own SAD (CSC v2: no SAD with such a token).

    The grant row is keyed by the token's digest, so ``signHash`` spends it through
    :func:`spend_sad` with the token as the SAD: the same atomic count, hash binding and audit.
    It expires with the token, to the microsecond (``expires_at`` is the token's): sent as
    ``SAD`` beside a service token, it must not sign after the token expired as a Bearer.
    """
    _value, statements = sad_inserts(grant, expires_at, expires_at, access_token)
    for statement, params in statements:
        await conn.execute(statement, params)
