"""The factors beyond the PIN and TOTP, as :func:`rssp.sam.factors.check_factors` checks them.

``check_factors`` keeps its order — refuse a locked credential, refuse a request that lacks
factors (not counted), take one attempt, check every factor, then reset or count — and asks
this module two things for a credential that has a factor set (:mod:`rssp.factors.model`):
:func:`plan` before the attempt is taken (which factors were supplied, whether they satisfy the
expression, whether the TOTP code must be checked) and :meth:`Plan.verify` after (the e-mailed
code, the passkey assertion, the OpenID Connect result). Every supplied factor is checked and
one wrong factor fails the attempt, so a wrong code, a bad assertion or a missing sign-in
counts toward the lockout exactly like a wrong PIN. A credential without a factor set gets None
and is checked as before.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from rssp.audit import record
from rssp.credentials import Credential
from rssp.errors import invalid_authentication_data, invalid_param, missing_param
from rssp.factors import model, oob
from rssp.factors.expression import PIN
from rssp.factors.model import EMAIL_LINK, EMAIL_OTP, FIDO, OIDC, OTP, FactorSet, TamperedFactors
from rssp.factors.oidc_proof import spend_proof
from rssp.factors.settings import WebAuthnSettings
from rssp.factors.webauthn import check_assertion
from rssp.hsm import Hsm
from rssp.store import Store

if TYPE_CHECKING:
    from rssp.sam.factors import Factors


@dataclass(frozen=True)
class Supplied:
    """What the signer gave beyond the PIN and the TOTP code, and what the authorization is for.

    ``values``: ``EMAIL_OTP`` → the code, ``EMAIL_LINK`` → None (approved later, out of band),
    ``FIDO`` → the assertion (JSON), ``OIDC`` → None (the consent session's sign-in result).
    """

    values: dict[str, str | None] = field(default_factory=dict)
    binding: oob.Binding = field(default_factory=oob.Binding)
    usable: frozenset[str] = model.API_IDS  # what this channel can carry (API or consent page)
    webauthn: WebAuthnSettings | None = None
    fido_challenge: bytes | None = None  # the consent page's WebAuthn challenge, spent by this check
    oidc_session: str | None = None  # the consent session whose OpenID Connect sign-in counts


@dataclass(frozen=True)
class Plan:
    factor_set: FactorSet
    supplied: Supplied
    values: dict[str, str | None]  # every factor to check beyond the PIN, the TOTP code under OTP
    user_id: str
    scal1: bool

    @property
    def otp(self) -> bool:
        """Whether a TOTP code was supplied (then it is checked, whatever the expression allows)."""
        return OTP in self.values

    async def verify(self, store: Store, hsm: Hsm) -> bool:
        """Check every factor supplied beyond the PIN and TOTP; False if any is wrong."""
        ok = True
        for factor_id, value in self.values.items():
            if factor_id in (OTP, EMAIL_LINK):  # the TOTP code is check_factors' own; a link is approved later
                continue
            ok = await self._one(store, hsm, factor_id, value) and ok  # check all, whatever came first
        return ok

    async def _one(self, store: Store, hsm: Hsm, factor_id: str, value: str | None) -> bool:
        s, fs = self.supplied, self.factor_set
        if factor_id == EMAIL_OTP and value is not None:
            return await oob.spend_code(store, hsm, fs.credential_id, self.user_id, s.binding, value,
                                        allow_unbound=self.scal1)
        if factor_id == FIDO and value is not None and s.webauthn is not None and s.fido_challenge is not None:
            return await check_assertion(store, s.webauthn, fs.passkeys, value, s.fido_challenge)
        if factor_id == OIDC and s.oidc_session is not None and fs.oidc is not None:
            return await spend_proof(store, s.oidc_session, fs.credential_id, fs.oidc, s.binding)
        return False


def _values(factor_set: FactorSet, factors: Factors, supplied: Supplied) -> dict[str, str | None]:
    """The supplied factors by ID. ``OTP`` is the credential's one-time password: its TOTP code,
    or — for a credential without TOTP that has e-mailed codes — the code (v1 clients send ``OTP``)."""
    values = dict(supplied.values)
    if factors.otp is not None:
        ids = factor_set.expression.ids
        if OTP not in ids and EMAIL_OTP in ids and EMAIL_OTP not in values:
            values[EMAIL_OTP] = factors.otp
        else:
            values[OTP] = None  # the code itself is in factors.otp, checked by check_factors
    return values


async def plan(store: Store, hsm: Hsm, cred: Credential, factors: Factors, actor: str,
               client_ip: str | None) -> Plan | None:
    """None for a credential without a factor set; else what to check. Raises before any attempt counts.

    A factor the credential does not have (or this channel cannot carry) is ``Invalid parameter
    authData``; factors that cannot satisfy the expression are a request without its factors
    (``Missing … authData``): neither is a guess, neither counts.
    """
    supplied = factors.more or Supplied()
    try:
        factor_set = await model.load(store, cred.id, hsm)
    except TamperedFactors:
        await _audit_tamper(store, cred, actor, client_ip)
        raise invalid_authentication_data() from None
    if factor_set is None and cred.level >= 2 and not cred.needs_totp:  # its factor set was deleted
        await _audit_tamper(store, cred, actor, client_ip)
        raise invalid_authentication_data()
    if factor_set is None:
        if supplied.values:
            raise invalid_param("authData")
        return None
    values = _values(factor_set, factors, supplied)
    if not set(values) <= (factor_set.expression.ids & supplied.usable):
        raise invalid_param("authData")
    given = set(values) | ({PIN} if factors.pin is not None else set())
    if not factor_set.expression.satisfied_by(given):
        raise missing_param("array", "authData")
    return Plan(factor_set, supplied, values, cred.user_id, cred.scal == "1")


async def _audit_tamper(store: Store, cred: Credential, actor: str, client_ip: str | None) -> None:
    async with store.write() as conn:
        await record(conn, actor=actor, action="credential.factors", target=cred.id, outcome="tampered",
                     client_ip=client_ip, detail={"reason": "the factor set is missing or does not match its HSM MAC"})
