"""How certificates, names and times appear in answers (the same forms as the rest of the API)."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from asn1crypto import x509
from cryptography import x509 as cx509


def _crypto(cert: x509.Certificate) -> cx509.Certificate:
    return cx509.load_der_x509_certificate(cert.dump())


def subject_dn(cert: x509.Certificate) -> str:
    return _crypto(cert).subject.rfc4514_string()


def signer_view(cert: x509.Certificate) -> dict[str, Any]:
    """``{subjectDN, issuerDN, serialNumber}`` as credentials/info and timestamps/info show them."""
    parsed = _crypto(cert)
    return {"subjectDN": parsed.subject.rfc4514_string(), "issuerDN": parsed.issuer.rfc4514_string(),
            "serialNumber": format(parsed.serial_number, "x")}


def gtime(moment: datetime | None) -> str | None:
    """GeneralizedTime text (``YYYYMMDDHHMMSSZ``), the form validFrom/validTo use."""
    if moment is None:
        return None
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def parse_time(value: str) -> datetime | None:
    """``YYYYMMDDHHMMSSZ`` or ISO 8601 with an offset; naive times are refused (ambiguous)."""
    try:
        if len(value) == 15 and value.endswith("Z") and value[:-1].isdigit():
            return datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
        moment = datetime.fromisoformat(value.replace("Z", "+00:00") if value.endswith("Z") else value)
    except ValueError:
        return None
    return moment.astimezone(UTC) if moment.tzinfo is not None else None
