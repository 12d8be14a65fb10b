"""A credential's factor set: its expression and the references of its e-mail, OpenID and passkey factors.

A credential without a ``credential_auth`` row keeps the factors it always had (the PIN, and
the TOTP seed at level 2 and 3: :func:`rssp.sam.factors.auth_expression`). With one, the
expression names every factor that authorizes it:

========== ======================= =============================================================
ID         linked by (eid type)    how the signer supplies it
========== ======================= =============================================================
PIN        ``password``            in ``authData`` / on the consent page
OTP        ``totp``                a TOTP code, in ``authData`` / on the consent page
EMAIL_OTP  ``email``               a code e-mailed after ``credentials/getChallenge`` (or v1 ``sendOTP``)
EMAIL_LINK ``email``               ``{"id": "EMAIL_LINK"}``: authorize answers 202, the e-mailed link approves
FIDO       ``fido``                a passkey, on the consent page
OIDC       ``oidc``                a fresh sign-in at an external OpenID Provider, on the consent page
========== ======================= =============================================================

The row's MAC (an HSM key, :mod:`rssp.factors.keys`) covers the expression and every factor's
reference (address, issuer and subject, passkey ID and public key): a database edit that
swaps the mailbox, the subject or a passkey makes the set fail its check, and the credential
refuses every authorization until it is linked again. Passkey sign counters are outside the
MAC (they change at every use) and only ever move forward.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import time
from dataclasses import dataclass

from sqlalchemy import delete, select, update

from rssp.auth.secrets import new_id
from rssp.factors.expression import PIN, Expression, ExpressionError, check, parse
from rssp.factors.keys import FACTORS_MAC_KEY, hsm_mac
from rssp.hsm import Hsm
from rssp.store import Conn, Store
from rssp.store.schema_factors import credential_auth, credential_factors

OTP, EMAIL_OTP, EMAIL_LINK, FIDO, OIDC = "OTP", "EMAIL_OTP", "EMAIL_LINK", "FIDO", "OIDC"
API_IDS = frozenset({PIN, OTP, EMAIL_OTP, EMAIL_LINK})  # what credentials/authorize can carry
BROWSER_IDS = frozenset({PIN, OTP, EMAIL_OTP, FIDO, OIDC})  # what the consent page can collect
OOB_IDS = frozenset({EMAIL_LINK})  # sent as {"id"} only: the value arrives out of band


class TamperedFactors(Exception):
    """The factor set does not match its MAC: it was edited outside rssp."""


@dataclass(frozen=True)
class Passkey:
    row_id: str
    webauthn_id: str  # base64url, as the browser reports it
    public_key: bytes  # COSE
    sign_count: int


@dataclass(frozen=True)
class FactorSet:
    credential_id: str
    expression: Expression
    email: str | None = None
    oidc: tuple[str, str] | None = None  # (issuer, subject)
    passkeys: tuple[Passkey, ...] = ()

    def api_expression(self) -> Expression | None:
        """What ``credentials/authorize`` can satisfy, or None (then only the consent page can)."""
        return self.expression.restricted_to(API_IDS)

    def uses(self, factor_id: str) -> bool:
        return factor_id in self.expression.ids


@dataclass(frozen=True)
class NewFactor:
    """A factor to link: ``email`` (reference = address), ``oidc`` (issuer + subject)."""

    kind: str
    reference: str
    subject: str | None = None


def factor_ids(kinds: set[str], totp: bool) -> list[tuple[str, ...]]:
    """The default expression's groups for these linked factor kinds (AND of every factor)."""
    groups: list[tuple[str, ...]] = [(PIN,)]
    if totp:
        groups.append((OTP,))
    if "email" in kinds:
        groups.append((EMAIL_OTP, EMAIL_LINK))
    if "fido" in kinds:
        groups.append((FIDO,))
    if "oidc" in kinds:
        groups.append((OIDC,))
    return groups


def known_ids(kinds: set[str], totp: bool) -> set[str]:
    return {i for g in factor_ids(kinds, totp) for i in g}


def _canonical(credential_id: str, expression: str, rows: list[tuple[str, str, str | None, bytes | None]]) -> bytes:
    items = sorted([kind, ref, subject or "", hashlib.sha256(pk or b"").hexdigest()] for kind, ref, subject, pk in rows)
    return b"rssp factor set v1\0" + json.dumps([credential_id, expression, items], separators=(",", ":")).encode()


async def _mac(hsm: Hsm, credential_id: str, expression: str,
               rows: list[tuple[str, str, str | None, bytes | None]]) -> bytes:
    return await hsm_mac(hsm, FACTORS_MAC_KEY, _canonical(credential_id, expression, rows))


async def load(store: Store, credential_id: str, hsm: Hsm | None = None) -> FactorSet | None:
    """The credential's factor set (None: PIN [AND OTP] as before); with ``hsm``, its MAC is checked."""
    async with store.read() as conn:
        head = (await conn.execute(select(credential_auth).where(
            credential_auth.c.credential_id == credential_id))).first()
        if head is None:
            return None
        rows = (await conn.execute(select(credential_factors).where(
            credential_factors.c.credential_id == credential_id).order_by(credential_factors.c.created_at))).all()
    if hsm is not None:
        expected = await _mac(hsm, credential_id, head.expression,
                              [(r.kind, r.reference, r.subject, r.public_key) for r in rows])
        if not hmac.compare_digest(expected, bytes(head.mac)):
            raise TamperedFactors(credential_id)
    return _factor_set(credential_id, head.expression, rows)


def _factor_set(credential_id: str, expression: str, rows: list) -> FactorSet:  # type: ignore[type-arg]
    try:
        expr = _parse_stored(expression)
    except ExpressionError:
        raise TamperedFactors(credential_id) from None
    email = next((r.reference for r in rows if r.kind == "email"), None)
    oidc = next(((r.reference, r.subject) for r in rows if r.kind == "oidc"), None)
    passkeys = tuple(Passkey(r.id, r.reference, bytes(r.public_key), r.sign_count) for r in rows if r.kind == "fido")
    return FactorSet(credential_id, expr, email, oidc, passkeys)


def _parse_stored(text: str) -> Expression:
    return parse(text, set(text.replace("(", " ").replace(")", " ").split()) - {"AND", "OR"})


async def link(store: Store, hsm: Hsm, credential_id: str, expression: Expression, factors: list[NewFactor],
               conn: Conn | None = None) -> None:
    """Set the credential's expression and e-mail/OpenID factors (passkeys stay); MACed as a whole.

    ``conn``: write in the caller's transaction (enrollment, where the credential row is new).
    """
    check(expression, expression.ids)
    if conn is not None:
        await _link_in(conn, hsm, credential_id, str(expression), factors)
        return
    async with store.write() as own:
        await _link_in(own, hsm, credential_id, str(expression), factors)


async def _link_in(conn: Conn, hsm: Hsm, credential_id: str, expression: str, factors: list[NewFactor]) -> None:
    kept = (await conn.execute(select(credential_factors).where(
        credential_factors.c.credential_id == credential_id, credential_factors.c.kind == "fido"))).all()
    rows: list[tuple[str, str, str | None, bytes | None]] = [
        (f.kind, f.reference, f.subject, None) for f in factors] + [
        (r.kind, r.reference, r.subject, bytes(r.public_key)) for r in kept]
    await _write_link(conn, credential_id, expression, factors, await _mac(hsm, credential_id, expression, rows))


async def _write_link(conn: Conn, credential_id: str, expression: str, factors: list[NewFactor], mac: bytes) -> None:
    now = time.time()
    await conn.execute(delete(credential_factors).where(credential_factors.c.credential_id == credential_id,
                                                        credential_factors.c.kind != "fido"))
    for f in factors:
        await conn.execute(credential_factors.insert().values(
            id=new_id(), credential_id=credential_id, kind=f.kind, reference=f.reference, subject=f.subject,
            public_key=None, sign_count=0, created_at=now))
    await conn.execute(delete(credential_auth).where(credential_auth.c.credential_id == credential_id))
    await conn.execute(credential_auth.insert().values(credential_id=credential_id, expression=expression, mac=mac,
                                                       updated_at=now))


async def add_passkey(store: Store, hsm: Hsm, credential_id: str, webauthn_id: str, public_key: bytes,
                      sign_count: int) -> bool:
    """Add a registered passkey and re-MAC the set; False if the set changed meanwhile or the ID is taken."""
    async with store.read() as conn:
        head = (await conn.execute(select(credential_auth).where(
            credential_auth.c.credential_id == credential_id))).first()
        rows = (await conn.execute(select(credential_factors).where(
            credential_factors.c.credential_id == credential_id))).all()
        taken = (await conn.execute(select(credential_factors.c.id).where(
            credential_factors.c.kind == "fido", credential_factors.c.reference == webauthn_id))).first()
    if head is None or taken is not None:
        return False
    current = [(r.kind, r.reference, r.subject, r.public_key) for r in rows]
    if not hmac.compare_digest(await _mac(hsm, credential_id, head.expression, current), bytes(head.mac)):
        raise TamperedFactors(credential_id)
    mac = await _mac(hsm, credential_id, head.expression, current + [("fido", webauthn_id, None, public_key)])
    async with store.write() as conn:
        swapped = await conn.execute(update(credential_auth).where(
            credential_auth.c.credential_id == credential_id, credential_auth.c.mac == head.mac)
            .values(mac=mac, updated_at=time.time()))
        if swapped.rowcount != 1:  # another registration won: the caller may try again
            return False
        await conn.execute(credential_factors.insert().values(
            id=new_id(), credential_id=credential_id, kind="fido", reference=webauthn_id, subject=None,
            public_key=public_key, sign_count=sign_count, created_at=time.time()))
    return True


async def advance_counter(store: Store, passkey: Passkey, new_count: int) -> bool:
    """Move the passkey's sign counter forward from the value the check saw; False if it moved meanwhile."""
    async with store.write() as conn:
        result = await conn.execute(update(credential_factors).where(
            credential_factors.c.id == passkey.row_id, credential_factors.c.sign_count == passkey.sign_count)
            .values(sign_count=new_count))
    return bool(result.rowcount == 1)
