"""What each client requires of the answers it parses, and the choices it makes from them.

Each check raises AssertionError with the reason a client would fail on the answer; they are
taken from the clients' parsers (the source named in each docstring). The choosers pick the
signature algorithm as each client does.
"""

from __future__ import annotations

import hashlib
import secrets
from typing import Any

from rssp.algorithms import EC_PUBLIC_KEY, RSA_ENCRYPTION, sign_algo_oid
from rssp.conformance.session import need
from rssp.hash_algorithms import HASHES, SIGNING_HASHES

ECDSA: dict[str, str] = {h: sign_algo_oid("ec", h) for h in SIGNING_HASHES}
RSA: dict[str, str] = {h: sign_algo_oid("rsa", h) for h in SIGNING_HASHES}
HASH_OID: dict[str, str] = {h: HASHES[h].oid for h in SIGNING_HASHES}
_STRENGTH = ("sha512", "sha384", "sha256")


def digest(label: str, hash_name: str = "sha256") -> bytes:
    """A fresh digest to sign (random: a replayed run never meets an old SAD's bound hashes)."""
    return hashlib.new(hash_name, f"rssp conformance kit {label} {secrets.token_hex(8)}".encode()).digest()


def strings(data: dict[str, Any], *names: str) -> None:
    for name in names:
        need(isinstance(data.get(name), str), f"{name} missing or not a string")


def info_v2_2(data: Any) -> None:
    """EUDI ``RSSPMetadataJsonParser`` (eudi-lib-jvm-rqes-csc-kt 0aedbe1)."""
    need(isinstance(data, dict), "not a JSON object")
    strings(data, "specs", "name", "logo", "region", "lang", "description")
    for name in ("authType", "methods", "supportedHashTypes", "conformance_levels"):
        need(isinstance(data.get(name), list), f"{name} missing or not an array")
    need(isinstance(data.get("signAlgorithms", {}).get("algos"), list), "signAlgorithms.algos missing")
    need(isinstance(data.get("signature_formats", {}).get("formats"), list), "signature_formats.formats missing")
    servers = [k for k in ("oauth2", "oauth2Issuer", "oauth2Servers") if k in data]
    if any(t in ("oauth2code", "oauth2client") for t in data["authType"]):
        need(len(servers) == 1, f"exactly one of oauth2, oauth2Issuer, oauth2Servers (got {servers})")


def info_v1(data: Any) -> None:
    """documenso ``ZCscInfoResponseSchema`` (CSC v1.0.4.0): ``oauth2`` is where it finds the AS."""
    need(isinstance(data, dict), "not a JSON object")
    strings(data, "specs", "name", "logo", "region", "lang", "description", "oauth2")
    need(isinstance(data.get("authType"), list) and isinstance(data.get("methods"), list), "authType/methods")


def credential_v2(data: Any) -> None:
    """EUDI ``CredentialsInfoEndpointClient``: key, cert (an object), auth, multisign; DNs with certInfo."""
    need(isinstance(data, dict), "not a JSON object")
    key = data.get("key")
    need(isinstance(key, dict) and isinstance(key.get("algo"), list) and isinstance(key.get("len"), int), "key")
    need(key.get("status") in ("enabled", "disabled"), "key.status")
    need(isinstance(data.get("cert"), dict), "cert missing (an object, possibly empty)")
    need(isinstance(data.get("auth"), dict) and data["auth"].get("mode") in ("explicit", "oauth2code"), "auth.mode")
    need(isinstance(data.get("multisign"), int) and data["multisign"] >= 1, "multisign")
    need(data.get("SCAL", "1") in ("1", "2"), "SCAL must be the string 1 or 2")
    cert = data["cert"]
    if "issuerDN" in cert or "validFrom" in cert:
        strings(cert, "issuerDN", "subjectDN", "serialNumber", "validFrom", "validTo")


def credential_pyhanko(data: Any) -> None:
    """pyHanko ``fetch_certs_in_csc_credential``: cert.certificates, key.algo a list, multisign, SCAL 1|2."""
    need(isinstance(data, dict) and isinstance(data.get("cert", {}).get("certificates"), list), "cert.certificates")
    need(isinstance(data.get("key", {}).get("algo"), list), "key.algo must be a list")
    need(isinstance(data.get("multisign"), int), "multisign must be an integer")
    need(int(data.get("SCAL", 1)) in (1, 2), "SCAL must be 1 or 2")


def credential_v1(data: Any) -> None:
    """documenso ``ZCscCredentialsInfoResponseSchema`` and ``resolveCscAlgorithmPolicy``."""
    need(isinstance(data, dict), "not a JSON object")
    need(data.get("authMode") in ("implicit", "explicit", "oauth2code"), "authMode (required in v1)")
    key, cert = data.get("key", {}), data.get("cert", {})
    need(key.get("status") == "enabled" and isinstance(key.get("len"), int), "key.status/key.len")
    need(isinstance(key.get("algo"), list), "key.algo")
    need(isinstance(cert.get("certificates"), list) and cert["certificates"], "cert.certificates (chain)")
    need(len(cert.get("validFrom", "")) == 15 and len(cert.get("validTo", "")) == 15,
         "validFrom/validTo YYYYMMDDHHMMSSZ")
    if EC_PUBLIC_KEY in key["algo"] or any(o in key["algo"] for o in ECDSA.values()):
        need(isinstance(key.get("curve"), str), "key.curve (ECDSA)")
    need(isinstance(data.get("multisign"), int) and data["multisign"] >= 1, "multisign")


def listed(credential_id: str | None) -> Any:
    def check(data: Any) -> None:
        need(isinstance(data, dict) and isinstance(data.get("credentialIDs"), list), "credentialIDs")
        need(bool(data["credentialIDs"]), "no credential: the signer must enrol first")
        if credential_id is not None:
            need(credential_id in data["credentialIDs"], f"{credential_id} not listed")
        for entry in data.get("credentialInfos") or []:
            credential_v2(entry)

    return check


def signatures(count: int) -> Any:
    def check(data: Any) -> None:
        need(isinstance(data, dict) and isinstance(data.get("signatures"), list), "signatures")
        need(len(data["signatures"]) == count, f"{len(data['signatures'])} signatures for {count} hashes")

    return check


def sad(data: Any) -> None:
    need(isinstance(data, dict) and isinstance(data.get("SAD"), str) and data["SAD"], "SAD (pyHanko: no 202)")


def key_kind(algos: list[str]) -> str:
    return "ec" if EC_PUBLIC_KEY in algos or any(o in algos for o in ECDSA.values()) else "rsa"


def sha256_combined(algos: list[str]) -> str:
    """pyHanko and EUDI: the combined SHA-256 OID of the key's kind (sha256_ecdsa / sha256_rsa)."""
    oid = (ECDSA if key_kind(algos) == "ec" else RSA)["sha256"]
    need(oid in algos, f"key.algo lacks {oid}: pyHanko refuses the credential")
    return oid


def strongest(algos: list[str]) -> tuple[str, str]:
    """documenso ``pickAlgorithmChoice``: ECDSA before RSA, the strongest digest first."""
    for table in (ECDSA, RSA):
        for name in _STRENGTH:
            if table[name] in algos:
                return table[name], name
    if RSA_ENCRYPTION in algos:
        return RSA_ENCRYPTION, "sha256"
    raise AssertionError("no algorithm documenso accepts")
