"""How certificates are named in answers: distinguished names as RFC 4514 text, and a signer's
``{subjectDN, issuerDN, serialNumber}`` (the same forms as the rest of the API); times are :mod:`.times`'s."""

from __future__ import annotations

from typing import Any

from asn1crypto import x509
from cryptography import x509 as cx509


# the attribute names cryptography's rfc4514_string uses; any other attribute is written OID=#hex
_SHORT = {"2.5.4.3": "CN", "2.5.4.7": "L", "2.5.4.8": "ST", "2.5.4.10": "O", "2.5.4.11": "OU", "2.5.4.6": "C",
          "2.5.4.9": "STREET", "0.9.2342.19200300.100.1.25": "DC", "0.9.2342.19200300.100.1.1": "UID"}


def _crypto(cert: x509.Certificate) -> cx509.Certificate | None:
    try:
        return cx509.load_der_x509_certificate(cert.dump())
    except ValueError:  # e.g. parameters after the algorithm: real certificates cryptography refuses
        return None


def _escape(value: str) -> str:
    out = "".join("\\" + c if c in ',+"\\<>;' else c for c in value)
    if out[:1] in ("#", " "):
        out = "\\" + out
    return out[:-1] + "\\ " if out.endswith(" ") else out


def rfc4514(name: x509.Name) -> str:
    """RFC 4514 text as cryptography writes it (last RDN first), from asn1crypto's parse: used
    when cryptography refuses the certificate, so that an answer can still name it."""
    rdns = []
    for rdn in reversed(list(name.chosen)):
        parts = []
        for attr in rdn:
            oid = attr["type"].dotted
            try:
                value = attr["value"].native
            except ValueError:
                value = None
            if oid in _SHORT and isinstance(value, str):
                parts.append(f"{_SHORT[oid]}={_escape(value)}")
            else:
                parts.append(f"{oid}=#{attr['value'].dump().hex()}")
        rdns.append("+".join(parts))
    return ",".join(rdns)


def subject_dn(cert: x509.Certificate) -> str:
    parsed = _crypto(cert)
    return parsed.subject.rfc4514_string() if parsed is not None else rfc4514(cert.subject)


def signer_view(cert: x509.Certificate) -> dict[str, Any]:
    """``{subjectDN, issuerDN, serialNumber}`` as credentials/info and timestamps/info show them."""
    parsed = _crypto(cert)
    if parsed is None:
        return {"subjectDN": rfc4514(cert.subject), "issuerDN": rfc4514(cert.issuer),
                "serialNumber": format(cert.serial_number, "x")}
    return {"subjectDN": parsed.subject.rfc4514_string(), "issuerDN": parsed.issuer.rfc4514_string(),
            "serialNumber": format(parsed.serial_number, "x")}
