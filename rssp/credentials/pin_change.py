"""Changing a credential's PIN: whoever chose the initial PIN can no longer sign with it.

An operator (``rssp credential create --pin``) or a CA's RA (``manages/linkEid``) sets a
credential's initial PIN, so they know it. The signer changes it (``credentials/changePIN``,
:mod:`rssp.api.pin_change`) once the current factors are checked, and counted toward the
lockout, exactly as for ``credentials/authorize`` (:func:`rssp.sam.factors.check_factors`).
One transaction then

- stores the new PIN: at levels 1 and 2 its argon2id hash; at level 3 the new PIN record (a
  new salt) and the private key re-wrapped inside the HSM from the old PIN's KEK to the new
  PIN's (:meth:`rssp.hsm.Hsm.rewrap_key`: the key is unwrapped into a session object that is
  destroyed before the call returns), so the old PIN unwraps nothing in the live database;
- revokes what the old PIN gave: the credential's SADs, its credential-scoped tokens (their
  whole grants), its unused OAuth codes and its out-of-band approvals not yet collected
  (``EMAIL_LINK``'s 202 handles); at level 3 each of them carries the old KEK, sealed;
- clears ``pin_change_required`` (``[security] require_pin_change_on_first_use``);
- records the signer's ``requestID``: the same one again answers 204 and changes nothing.

The update holds only if the PIN record is still the one the factors were checked against:
of two concurrent changes, one applies and the other stores nothing.

The current factors travel in the request, so a credential whose expression can be met only by
a passkey, an OpenID Provider sign-in or an e-mailed approval link (:mod:`rssp.factors`) cannot
change its PIN this way: it is refused before anything is counted (:func:`reachable`).

What no change can reach: copies of the database made before it still hold the key wrapped
under the old PIN's KEK (docs/level3.md).
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from rssp.audit import record
from rssp.auth.passwords import hash_secret
from rssp.auth.tokens import revoke_grant
from rssp.credentials.model import Credential
from rssp.errors import CSCError, OperatorError, invalid_request
from rssp.factors import model as factor_model
from rssp.factors.expression import PIN
from rssp.factors.model import EMAIL_OTP, OTP
from rssp.hsm import Hsm, HsmError
from rssp.sam import kek as level3
from rssp.store import Conn, Store
from rssp.store.schema import credentials, oauth_codes, pin_change_requests, sad_hashes, sads, tokens
from rssp.store.schema_factors import pending_authorizations

PIN_CHANGE_REQUIRED = "The PIN must be changed with credentials/changePIN before the credential can sign"
SAME_PIN = "newPIN must differ from the current PIN"
CHANGED_MEANWHILE = "The PIN was changed by another request meanwhile"
REQUEST_REUSED = "requestID was already used for another request"
UNREACHABLE = ("The credential's factors cannot all be sent to credentials/changePIN "
               "(a passkey, an OpenID Provider sign-in or an e-mailed approval link is required)")
IN_BAND = frozenset({PIN, OTP, EMAIL_OTP})  # what a request body carries
MIN_DIGITS, MAX_DIGITS = 4, 32


class PinChangeError(OperatorError):
    """The change is refused; the message is a fixed text (never a PIN), safe for the API."""


def pin_problem(level: int, pin: str) -> str | None:
    """Why ``pin`` is not acceptable for a credential of ``level``, or None.

    Levels 1 and 2: 4 to 32 ASCII digits (``credentials/info`` says format ``N``). Level 3:
    :func:`rssp.sam.kek.pin_problem` (8-64 printable characters, a letter and a digit).
    """
    if level >= 3:
        return level3.pin_problem(pin)
    if not (pin.isascii() and pin.isdigit() and MIN_DIGITS <= len(pin) <= MAX_DIGITS):
        return f"the PIN must be {MIN_DIGITS} to {MAX_DIGITS} digits"
    return None


def refuse_until_pin_changed(cred: Credential) -> None:
    """The first-use policy: a credential whose PIN someone else chose authorizes nothing yet."""
    if cred.pin_change_required:
        raise invalid_request(PIN_CHANGE_REQUIRED)


def check_new_pin(cred: Credential, new_pin: str, current_pin: str) -> None:
    """Refuse, before any factor is checked (nothing counted), a new PIN that cannot be used."""
    problem = pin_problem(cred.level, new_pin)
    if problem:
        raise PinChangeError(f"Invalid parameter newPIN: {problem}")
    if new_pin == current_pin:
        raise PinChangeError(SAME_PIN)


async def reachable(store: Store, cred: Credential) -> None:
    """Refuse a credential whose factor set no request body can satisfy (nothing counted).

    The factor set's MAC is checked later, by :func:`~rssp.sam.factors.check_factors`.
    """
    factor_set = await factor_model.load(store, cred.id)
    if factor_set is not None and factor_set.expression.restricted_to(IN_BAND) is None:
        raise PinChangeError(UNREACHABLE)


@dataclass(frozen=True)
class PinChange:
    """One request: the credential as read (its PIN record is what the update is conditional on)."""

    cred: Credential
    user_id: str
    request_id: str
    client_ip: str | None = None


async def replayed(store: Store, change: PinChange) -> bool:
    """Whether the signer sent this requestID before (audited as a replay, nothing changes).

    A requestID the signer used for another credential is refused. The answer to a replay is
    the same whatever its body: nothing of it is compared with the first (no PIN is kept).
    """
    query = select(pin_change_requests.c.credential_id).where(
        pin_change_requests.c.requester == change.user_id, pin_change_requests.c.request_id == change.request_id)
    async with store.read() as conn:
        first = (await conn.execute(query)).scalar()
    if first is None:
        return False
    if first != change.cred.id:
        raise PinChangeError(REQUEST_REUSED)
    async with store.write() as conn:
        await record(conn, actor=change.user_id, action="credential.changePIN", target=change.cred.id,
                     outcome="replayed", client_ip=change.client_ip, detail={"requestID": change.request_id})
    return True


async def new_secrets(hsm: Hsm, cred: Credential, kek: bytes | None, new_pin: str) -> tuple[str, bytes | None]:
    """What to store for ``new_pin``: the PIN hash or record and, at level 3, the re-wrapped key.

    ``kek`` is what :func:`~rssp.sam.factors.check_factors` returned for the current PIN. Run
    before the transaction: argon2id must not hold the database's write lock.
    """
    if not cred.factor_bound:
        return await hash_secret(new_pin), None
    if kek is None or cred.wrapped_key is None:
        raise CSCError(500, "server_error", "The PIN could not be changed")
    new_kek, pin_record = await level3.new_kek(hsm, cred.id, new_pin)
    try:
        wrapped = await hsm.rewrap_key(cred.wrapped_key, cred.key_kind, kek, new_kek)
    except HsmError:
        raise CSCError(500, "server_error", "The PIN could not be changed") from None
    return pin_record, wrapped


async def apply(store: Store, change: PinChange, pin_hash: str, wrapped: bytes | None) -> None:
    """Store the new PIN (and key), revoke the old authorizations, record the requestID: one transaction."""
    cred = change.cred
    try:
        async with store.write() as conn:
            await conn.execute(pin_change_requests.insert().values(
                requester=change.user_id, request_id=change.request_id, credential_id=cred.id,
                created_at=time.time()))
            await _store_pin(conn, cred, pin_hash, wrapped)
            revoked = await revoke_authorizations(conn, cred.id)
            await record(conn, actor=change.user_id, action="credential.changePIN", target=cred.id, outcome="ok",
                         client_ip=change.client_ip, detail={"requestID": change.request_id, "level": cred.level,
                                                             **revoked})
    except IntegrityError:  # the same requestID committed meanwhile (a concurrent replay)
        if not await replayed(store, change):
            raise


async def _store_pin(conn: Conn, cred: Credential, pin_hash: str, wrapped: bytes | None) -> None:
    values: dict[str, object] = {"pin_hash": pin_hash, "pin_change_required": False, "updated_at": time.time()}
    if wrapped is not None:
        values["wrapped_key"] = wrapped
    result = await conn.execute(update(credentials).where(
        credentials.c.id == cred.id, credentials.c.status != "deleted", credentials.c.pin_hash == cred.pin_hash,
    ).values(**values))
    if result.rowcount != 1:
        raise PinChangeError(CHANGED_MEANWHILE)


async def revoke_authorizations(conn: Conn, credential_id: str) -> dict[str, int]:
    """End everything the old PIN authorized; how many of each went (for the audit record).

    Run after the credential's row is updated (locked) in the same transaction. The OAuth codes
    not yet exchanged go first: an exchange in flight holds its code's row, so this waits for it
    and the statements after it see the token it issued. Then the credential-scoped tokens with
    their whole grant (refresh tokens too) and their SAD rows; then every other SAD, and the
    out-of-band approvals (202 handles) not yet collected.
    """
    codes = await conn.execute(delete(oauth_codes).where(oauth_codes.c.credential_id == credential_id,
                                                         oauth_codes.c.used.is_(False)))
    grants = (await conn.execute(select(tokens.c.grant_id).distinct().where(
        tokens.c.credential_id == credential_id, tokens.c.revoked.is_(False)))).scalars().all()
    for grant_id in grants:
        await revoke_grant(conn, grant_id)
    issued = select(sads.c.sad_hash).where(sads.c.credential_id == credential_id)
    await conn.execute(delete(sad_hashes).where(sad_hashes.c.sad_hash.in_(issued)))
    gone = await conn.execute(delete(sads).where(sads.c.credential_id == credential_id))
    pending = await conn.execute(delete(pending_authorizations).where(
        pending_authorizations.c.credential_id == credential_id,
        pending_authorizations.c.status.in_(("pending", "approved"))))
    return {"revokedSADs": int(gone.rowcount), "revokedTokenGrants": len(grants), "revokedCodes": int(codes.rowcount),
            "revokedApprovals": int(pending.rowcount)}


async def hold_pin(conn: Conn, cred: Credential) -> bool:
    """Whether the PIN record is still the one ``cred``'s factors were checked against.

    Called in the transaction that issues a SAD, a code or an out-of-band approval's handle from
    checked factors; on PostgreSQL it
    share-locks the credential's row until that transaction ends. A concurrent change then
    either committed first (False: the caller issues nothing) or waits for the caller's commit
    and revokes what it issued. SQLite runs one write transaction at a time anyway.
    """
    query = select(credentials.c.pin_hash).where(credentials.c.id == cred.id).with_for_update(read=True)
    return bool((await conn.execute(query)).scalar() == cred.pin_hash)
