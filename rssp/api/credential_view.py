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
from rssp.sam.factors import auth_expression


def _time(cert: x509.Certificate, attr: str) -> str:
    return getattr(cert, attr).strftime("%Y%m%d%H%M%SZ")


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


def auth_view(cred: Credential) -> dict[str, Any]:
    objects: list[dict[str, Any]] = [
        {"type": "Password", "id": "PIN", "format": _pin_format(cred), "label": "PIN", "description": "Credential PIN"}
    ]
    if cred.needs_totp:
        objects.append({"type": "Password", "id": "OTP", "format": "N", "generator": "totp",
                        "label": "OTP", "description": "Time-based one-time password (RFC 6238)"})
    return {"mode": "explicit", "expression": auth_expression(cred), "objects": objects}


def v1_fields(cred: Credential) -> dict[str, Any]:
    out: dict[str, Any] = {"authMode": "explicit", "PIN": {"presence": "true", "format": _pin_format(cred),
                                                           "label": "PIN"}}
    if cred.needs_totp:
        out["OTP"] = {"presence": "true", "type": "offline", "format": "N", "label": "OTP"}
    return out


def credential_view(cred: Credential, *, certificates: str, cert_info: bool, version: str, lang: str) -> dict[str, Any]:
    """``auth`` is always sent, whatever ``authInfo`` says: the EUDI client requires it."""
    out: dict[str, Any] = {
        "key": key_view(cred),
        "cert": cert_view(cred, certificates, cert_info),
        "auth": auth_view(cred),
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
        out.update(v1_fields(cred))
    return out
