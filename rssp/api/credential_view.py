"""How a credential looks in ``credentials/info`` and ``credentials/list`` (CSC v2 §11.5).

The v1 fields (``authMode``, ``PIN``, ``OTP``) are added on the ``/csc/v1/`` path only, for
clients written against CSC v1.
"""

from __future__ import annotations

from typing import Any

from cryptography import x509

from rssp.algorithms import CURVE_OIDS, key_algos
from rssp.api.parse import encode_b64
from rssp.credentials import Credential
from rssp.factors.messages import mask
from rssp.factors.model import EMAIL_LINK, EMAIL_OTP, FactorSet
from rssp.sam.factors import auth_expression


def _time(cert: x509.Certificate, attr: str) -> str:
    return str(getattr(cert, attr).strftime("%Y%m%d%H%M%SZ"))  # asn1crypto is untyped


def key_view(cred: Credential) -> dict[str, Any]:
    """CSC knows ``enabled`` and ``disabled``: a suspended credential (JT2A 3.3) is ``disabled``."""
    status = "enabled" if cred.status == "enabled" else "disabled"
    key: dict[str, Any] = {"status": status, "algo": key_algos(cred.key_kind), "len": cred.key_len}
    if cred.key_kind == "ec" and cred.curve:
        key["curve"] = CURVE_OIDS[cred.curve]
    return key


def cert_view(cred: Credential, certificates: str, cert_info: bool) -> dict[str, Any]:
    cert = cred.x509
    if cert is None or cred.certificate is None:
        return {}
    out: dict[str, Any] = {"status": cred.cert_status()}
    if certificates == "single":
        out["certificates"] = [encode_b64(cred.certificate)]
    elif certificates == "chain":
        out["certificates"] = [encode_b64(c) for c in (cred.certificate, *cred.chain)]
    if cert_info:
        out.update(
            issuerDN=cert.issuer.rfc4514_string(),
            subjectDN=cert.subject.rfc4514_string(),
            serialNumber=format(cert.serial_number, "x"),
            validFrom=_time(cert, "not_valid_before_utc"),
            validTo=_time(cert, "not_valid_after_utc"),
        )
    return out


def _pin_format(cred: Credential) -> str:
    """Level 3 PINs have letters and digits (rssp.sam.kek.pin_problem); below, digits only."""
    return "A" if cred.factor_bound else "N"


_TOTP_OBJECT = {"type": "Password", "id": "OTP", "format": "N", "generator": "totp", "label": "OTP",
                "description": "Time-based one-time password (RFC 6238)"}


def _objects(cred: Credential, ids: frozenset[str], factor_set: FactorSet | None) -> list[dict[str, Any]]:
    """The auth objects of ``ids``, in a fixed order (PIN first)."""
    objects: list[dict[str, Any]] = [
        {"type": "Password", "id": "PIN", "format": _pin_format(cred), "label": "PIN", "description": "Credential PIN"}
    ]
    if "OTP" in ids:
        objects.append(dict(_TOTP_OBJECT))
    address = mask(factor_set.email) if factor_set and factor_set.email else "the signer's address"
    if EMAIL_OTP in ids:
        objects.append({"type": "ChallengeResponse", "id": EMAIL_OTP, "format": "N", "label": "E-mail OTP",
                        "description": f"One-time password e-mailed to {address} by credentials/getChallenge"})
    if EMAIL_LINK in ids:
        objects.append({"type": "PasswordOOB", "id": EMAIL_LINK, "label": "E-mail approval",
                        "description": f"Approval through a link e-mailed to {address}: credentials/authorize "
                                       "answers 202 with a handle for credentials/authorizeCheck"})
    return objects


def auth_view(cred: Credential, factor_set: FactorSet | None = None) -> dict[str, Any]:
    """With a factor set (rssp.factors), what ``credentials/authorize`` can satisfy; when nothing
    can (a passkey or an OpenID Provider is required), mode ``oauth2code``: the consent page can."""
    if factor_set is None:
        ids = frozenset({"PIN", "OTP"} if cred.needs_totp else {"PIN"})
        return {"mode": "explicit", "expression": auth_expression(cred), "objects": _objects(cred, ids, None)}
    usable = factor_set.api_expression()
    if usable is None:
        return {"mode": "oauth2code"}
    return {"mode": "explicit", "expression": str(usable), "objects": _objects(cred, usable.ids, factor_set)}


def v1_fields(cred: Credential, factor_set: FactorSet | None = None) -> dict[str, Any]:
    usable = factor_set.api_expression() if factor_set else None
    if factor_set is not None and usable is None:
        return {"authMode": "oauth2code"}
    out: dict[str, Any] = {"authMode": "explicit", "PIN": {"presence": "true", "format": _pin_format(cred),
                                                           "label": "PIN"}}
    ids = usable.ids if usable else frozenset({"OTP"} if cred.needs_totp else ())
    if "OTP" in ids:
        out["OTP"] = {"presence": "true", "type": "offline", "format": "N", "label": "OTP"}
    elif EMAIL_OTP in ids:  # v1 clients call credentials/sendOTP, then send it as OTP
        out["OTP"] = {"presence": "true", "type": "online", "format": "N", "label": "OTP",
                      "description": "One-time password sent by e-mail (credentials/sendOTP)"}
    return out


def credential_view(cred: Credential, *, certificates: str, cert_info: bool, version: str, lang: str,
                    factor_set: FactorSet | None = None) -> dict[str, Any]:
    """``auth`` is always sent, whatever ``authInfo`` says: the EUDI client requires it."""
    out: dict[str, Any] = {
        "key": key_view(cred),
        "cert": cert_view(cred, certificates, cert_info),
        "auth": auth_view(cred, factor_set),
        "SCAL": cred.scal,
        "multisign": cred.multisign,
        "lang": lang,
    }
    if cred.description:
        out["description"] = cred.description
    if cred.signature_qualifier:
        out["signatureQualifier"] = cred.signature_qualifier
    if cred.pin_change_required:  # JT2A extension: no signing until credentials/changePIN
        out["pinChangeRequired"] = True
    if version == "v1":
        out.update(v1_fields(cred, factor_set))
    return out
