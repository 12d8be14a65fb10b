"""Linking the factors beyond PIN and TOTP to a credential: ``manages/linkEid`` and ``rssp credential create``.

An RA (or the operator) names the factors — an e-mail address, an OpenID Provider's issuer and
the signer's subject there, a passkey to be registered — and optionally the expression that
combines them (:mod:`rssp.factors.expression`; by default every factor is required, the two
e-mail objects being alternatives of one factor). The rules:

- the PIN is always required on its own (level 3: the key unwraps only with it);
- at level 2 and 3 the expression needs at least two factors in every way it can be satisfied;
- an OpenID issuer must be one configured in ``[oidc.NAME]``;
- a passkey is registered later by the signer through the link this returns.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from rssp.factors import model
from rssp.factors.expression import Expression, ExpressionError, conjunction, parse
from rssp.factors.registration import REGISTER_PATH, new_link
from rssp.factors.settings import FactorSettings
from rssp.hsm import Hsm
from rssp.store import Conn, Store

_EMAIL = re.compile(r"^[^@\s\"<>,;]{1,64}@[A-Za-z0-9.-]{1,189}\.[A-Za-z]{2,63}$")
_SUBJECT = re.compile(r"^[!-~]{1,255}$")


class LinkError(ValueError):
    """A factor or the expression is not acceptable; ``parameter`` names the field at fault."""

    def __init__(self, parameter: str, reason: str) -> None:
        super().__init__(reason)
        self.parameter = parameter


@dataclass(frozen=True)
class FactorRequest:
    email: str | None = None
    oidc: tuple[str, str] | None = None  # (issuer, subject)
    passkey: bool = False
    expression: str | None = None

    @property
    def any(self) -> bool:
        return bool(self.email or self.oidc or self.passkey)

    @property
    def kinds(self) -> set[str]:
        return {k for k, on in (("email", self.email), ("oidc", self.oidc), ("fido", self.passkey)) if on}


def check_email(address: str) -> str:
    if len(address) > 254 or not _EMAIL.match(address):
        raise LinkError("eids", "not an e-mail address")
    return address


def check_oidc(settings: FactorSettings, issuer: str, subject: str) -> tuple[str, str]:
    if settings.provider_for(issuer) is None:
        raise LinkError("eids", f"no OpenID Provider with issuer {issuer!r} is configured")
    if not _SUBJECT.match(subject):
        raise LinkError("eids", "the OpenID subject must be 1 to 255 printable ASCII characters")
    return issuer, subject


def expression_for(req: FactorRequest, totp: bool, level: int) -> Expression:
    """The credential's expression: the one asked for, checked, or every linked factor."""
    known = model.known_ids(req.kinds, totp)
    try:
        expr = parse(req.expression, known) if req.expression else conjunction(model.factor_ids(req.kinds, totp))
    except ExpressionError as exc:
        raise LinkError("expression", str(exc)) from None
    if level >= 2 and expr.factor_count < 2:
        raise LinkError("expression", f"level {level} needs at least two factors")
    return expr


async def apply(store: Store, hsm: Hsm, settings: FactorSettings, credential_id: str, req: FactorRequest,
                expression: Expression, conn: Conn | None = None) -> str | None:
    """Write the factor set; the passkey registration URL (shown once) when a passkey is to be registered."""
    factors = ([model.NewFactor("email", req.email)] if req.email else []) + (
        [model.NewFactor("oidc", req.oidc[0], req.oidc[1])] if req.oidc else [])
    await model.link(store, hsm, credential_id, expression, factors, conn)
    if not req.passkey:
        return None
    token = await new_link(store, credential_id, settings.webauthn.registration_link_ttl_seconds, conn)
    return f"{settings.public_url}{REGISTER_PATH}?token={token}"
