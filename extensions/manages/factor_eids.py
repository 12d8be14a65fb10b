"""The ``manages/linkEid`` eid types beyond ``password`` and ``totp``: ``email``, ``fido``, ``oidc``.

An RA names them like the others, ``{"type", "reference"}``: ``email`` with the address,
``fido`` without a reference (the answer carries a passkey registration link for the
subscriber), ``oidc`` with the signer's subject and ``issuer`` naming a provider configured in
``[oidc.NAME]``. The checks and the factor set itself are core's (:mod:`rssp.factors.link`);
this module maps them onto the method's errors (``Invalid parameter eids`` / ``expression``).
"""

from __future__ import annotations

from typing import Any

from rssp.errors import invalid_param
from rssp.factors.expression import Expression
from rssp.factors.link import FactorRequest, LinkError, apply, check_email, check_oidc, expression_for
from rssp.factors.service import of_services
from rssp.factors.settings import FactorSettings
from rssp.services import Services


def parse(kind: str, ref: str | None, entry: dict[str, Any]) -> Any:
    """What one eid of these types declares: the address, True (a passkey), or (issuer, subject)."""
    try:
        if kind == "email" and ref is not None:
            return check_email(ref)
        if kind == "fido" and ref is None:
            return True
        issuer = entry.get("issuer")
        if kind == "oidc" and ref is not None and isinstance(issuer, str) and len(issuer) <= 512:
            return issuer, ref
    except LinkError:
        pass
    raise invalid_param("eids")


def _settings(services: Services) -> FactorSettings:
    return of_services(services.extras, services.config).settings


def expression(services: Services, request: FactorRequest, totp: bool, level: int) -> Expression | None:
    """The factor set's expression when the RA linked any of these factors (else None: PIN [AND OTP])."""
    if not request.any:
        return None
    try:
        if request.oidc:
            check_oidc(_settings(services), *request.oidc)
        return expression_for(request, totp, level)
    except LinkError as exc:
        raise invalid_param(exc.parameter) from None


async def link(services: Services, credential_id: str, request: FactorRequest, expr: Expression) -> str | None:
    """Write the factor set (before the PIN: never one without the other); the passkey registration URI."""
    return await apply(services.store, services.hsm, _settings(services), credential_id, request, expr)
