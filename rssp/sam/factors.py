"""Checking a signer's factors for a credential, with lockout and OTP replay protection.

Level 1 asks for the PIN; levels 2 and 3 ask for the PIN AND a TOTP code. Every failed attempt
counts toward the credential's lockout (JT2A 3.2.1.2: resistance to guessing); a locked
credential refuses even correct factors until a privileged user unlocks it. A TOTP code is
accepted once: the time step it belongs to is stored and must move forward.

An attempt is counted *before* its factors are checked, by one conditional update that takes
one of the attempts left (#20: counted after the check, 50 concurrent wrong PINs were all
evaluated and the right PIN got in as the 6th). So however many requests race, in however
many processes or hosts, at most ``max_failures`` attempts are ever checked between two
successes; a success gives its attempt back by resetting the count, a failure keeps it and
locks the credential once the count reaches the limit. A request that finds every attempt
taken by others still being checked is told to try again (429), not that the credential is
locked: concurrent authorizations with the right PIN must not lock it out. An attempt whose
process dies before its answer stays counted, and counts as a failure after two minutes. An
attempt whose right factors could not be recorded because the database failed is given back
when the database returns (:mod:`rssp.sam.give_back`).

At level 3 the PIN is checked by recomputing the credential's key-encryption key from it
(:mod:`rssp.sam.kek`: argon2id, then an HSM key): the check yields the KEK, which the caller
seals into the SAD it issues, so the key can be unwrapped only by the holder of that SAD.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import NoReturn

import pyotp
from sqlalchemy import or_, select, update

from rssp.audit import record
from rssp.auth.passwords import verify_secret
from rssp.credentials import Credential
from rssp.errors import credential_locked, hsm_unavailable, invalid_authentication_data, missing_param, try_later
from rssp.factors.check import Supplied  # the factors beyond PIN and TOTP (#14)
from rssp.factors.check import plan as factor_plan
from rssp.hsm import Hsm, HsmError
from rssp.sam import kek as level3
from rssp.sam import totp_lead
from rssp.sam.give_back import give_back, give_back_if_unavailable
from rssp.store import Store
from rssp.store.schema import credentials

TOTP_KEY_LABEL = "rssp-totp-seeds"
TOTP_WINDOW = 1  # accept the previous and the next 30 s step for clock drift
_STALE_ATTEMPT_SECONDS = 120  # an attempt unanswered this long died with its process; it counts as failed


@dataclass(frozen=True)
class Factors:
    """What the client sent: the PIN and the OTP (either may be missing)."""

    pin: str | None
    otp: str | None
    more: Supplied | None = None  # e-mailed codes and links, passkeys, OpenID Connect (rssp.factors.check)


def auth_expression(cred: Credential) -> str:
    return "PIN AND OTP" if cred.needs_totp else "PIN"


async def _totp_step(store: Store, hsm: Hsm, cred: Credential, otp: str | None) -> int | None:
    """The time step the code matches, or None. The seed is decrypted inside the HSM."""
    if otp is None or cred.totp_secret is None or not otp.isdigit():
        return None
    # An HsmError is the HSM's fault, not a wrong code: check_factors gives the attempt back (503).
    seed = (await hsm.decrypt(TOTP_KEY_LABEL, cred.totp_secret, cred.id.encode())).decode()
    totp = pyotp.TOTP(seed)
    now = time.time()
    for offset in range(-TOTP_WINDOW, TOTP_WINDOW + 1):
        at = now + offset * totp.interval
        if totp.verify(otp, for_time=at, valid_window=0):
            return int(at // totp.interval)
    return await totp_lead.step_ahead(store, cred.id, totp, otp, TOTP_WINDOW)  # None unless in a test set-up


async def _check_pin(hsm: Hsm, cred: Credential, pin: str) -> tuple[bool, bytes | None]:
    """Whether the PIN is right, and at level 3 the key-encryption key it unlocks."""
    if cred.factor_bound:
        kek = await level3.unlock(hsm, cred.id, cred.pin_hash, pin)
        return kek is not None, kek
    return await verify_secret(cred.pin_hash, pin), None


async def check_factors(
    store: Store, hsm: Hsm, cred: Credential, factors: Factors, *, max_failures: int, actor: str, client_ip: str | None
) -> bytes | None:
    """Raise ``Credential locked`` or ``invalid_authentication_data``, or return if all factors hold.

    Returns the level-3 key-encryption key (None below level 3): never store or log it.
    """
    if cred.locked:
        await _refuse_locked(store, cred, actor, client_ip)
    plan = await factor_plan(store, hsm, cred, factors, actor, client_ip)  # None: no factor set, PIN [AND OTP]
    otp_required = (cred.needs_totp or cred.factor_bound) if plan is None else plan.otp  # level 3 needs its seed
    if factors.pin is None or (otp_required and factors.otp is None):
        # Absent factors are a malformed request, not a guess: they do not count toward lockout.
        raise missing_param("array", "authData")
    taken_at = await _take_attempt(store, cred, max_failures)
    if taken_at is None:
        if await _locked_now(store, cred, max_failures):
            await _refuse_locked(store, cred, actor, client_ip)
        # Every attempt left is being checked right now: not a lockout, but no place for this one.
        raise try_later("Other authorizations of this credential are being checked; try again", 1)
    try:
        pin_ok, kek = await _check_pin(hsm, cred, factors.pin)
        step = await _totp_step(store, hsm, cred, factors.otp) if otp_required else 0
        more_ok = plan is None or await plan.verify(store, hsm)  # checked whatever the PIN gave: no timing oracle
    except HsmError:
        # The HSM could not check a factor (a level-3 PIN, the TOTP seed): no guess was judged, so
        # the attempt is no failure. Counting it would lock the signer out during an HSM outage.
        await give_back(store, cred.id, taken_at)
        raise hsm_unavailable() from None
    if pin_ok and step is not None and more_ok:
        try:
            if await _accept(store, cred, step, actor, client_ip):
                return kek
        except Exception as exc:
            give_back_if_unavailable(exc, store, cred.id, taken_at)
            raise
    await _count_failure(store, cred, max_failures, actor, client_ip)
    raise invalid_authentication_data()


async def _refuse_locked(store: Store, cred: Credential, actor: str, client_ip: str | None) -> NoReturn:
    async with store.write() as conn:
        await record(conn, actor=actor, action="credential.authorize", target=cred.id, outcome="locked",
                     client_ip=client_ip)
    raise credential_locked()


async def _take_attempt(store: Store, cred: Credential, max_failures: int) -> float | None:
    """Count one attempt if the credential has one left: the time written with it; None if locked or none left."""
    taken_at = time.time()
    async with store.write() as conn:
        result = await conn.execute(
            update(credentials)
            .where(credentials.c.id == cred.id, credentials.c.locked.is_(False),
                   credentials.c.failed_attempts < max_failures)
            .values(failed_attempts=credentials.c.failed_attempts + 1, updated_at=taken_at)
        )
    return taken_at if result.rowcount == 1 else None


async def _locked_now(store: Store, cred: Credential, max_failures: int) -> bool:
    """Locked, or every attempt taken and none answered for a while (its process died: a failure)."""
    async with store.write() as conn:
        await conn.execute(
            update(credentials)
            .where(credentials.c.id == cred.id, credentials.c.locked.is_(False),
                   credentials.c.failed_attempts >= max_failures,
                   credentials.c.updated_at < time.time() - _STALE_ATTEMPT_SECONDS)
            .values(locked=True)
        )
        row = (await conn.execute(select(credentials.c.locked).where(credentials.c.id == cred.id))).first()
    return row is None or bool(row.locked)


async def _accept(store: Store, cred: Credential, step: int, actor: str, client_ip: str | None) -> bool:
    """Reset the attempt count and spend the OTP step, atomically; False if locked or the step was used."""
    query = update(credentials).where(credentials.c.id == cred.id, credentials.c.locked.is_(False))
    if cred.needs_totp and step:  # step 0: no TOTP code was asked for (another factor stood in for it)
        query = query.where(credentials.c.totp_last_step < step)
    async with store.write() as conn:
        values = {"failed_attempts": 0, **({"totp_last_step": step} if step else {})}  # never moves a step back
        result = await conn.execute(query.values(**values))
        if result.rowcount != 1:
            return False
        await record(conn, actor=actor, action="credential.factors", target=cred.id, outcome="ok", client_ip=client_ip)
    return True


async def _count_failure(store: Store, cred: Credential, max_failures: int, actor: str, client_ip: str | None) -> None:
    """The attempt is already counted: lock the credential if it was the last one left."""
    async with store.write() as conn:
        await conn.execute(
            update(credentials)
            .where(credentials.c.id == cred.id)
            .values(locked=or_(credentials.c.locked, credentials.c.failed_attempts >= max_failures),
                    updated_at=time.time())
        )
        await record(conn, actor=actor, action="credential.factors", target=cred.id, outcome="failed",
                     client_ip=client_ip)
