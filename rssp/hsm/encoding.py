"""DER the HSM layer hands out or feeds in: public keys as SPKI, DigestInfo, ECDSA signatures.

PKCS#11 speaks in raw attributes and raw signature values; X.509 and CMS want DER. All the
ASN.1 here is built by libraries (asn1crypto, pyca/cryptography), never by hand.
"""

from __future__ import annotations

import functools
from typing import Any

from asn1crypto import algos, core, keys
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from pkcs11 import Attribute, KeyType

from .types import HASH_LEN, HashName, HsmError


def rsa_spki(modulus: bytes, exponent: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for an RSA key from its CKA_MODULUS/CKA_PUBLIC_EXPONENT."""
    pkcs1 = keys.RSAPublicKey(
        {"modulus": int.from_bytes(modulus, "big"), "public_exponent": int.from_bytes(exponent, "big")}
    )
    der: bytes = keys.PublicKeyInfo.wrap(pkcs1, "rsa").dump()
    return der


def unwrap_ec_point(point: bytes) -> bytes:
    """Return the raw X9.62 point from CKA_EC_POINT.

    PKCS#11 says CKA_EC_POINT is a DER OCTET STRING around the point, which SoftHSM2 does;
    some tokens return the bare point. Both start with 0x04, so accept the wrapped form only
    if it parses exactly.
    """
    try:
        inner = core.OctetString.load(point, strict=True).native
    except ValueError:
        return point
    return inner if inner[:1] in (b"\x02", b"\x03", b"\x04") else point


def ec_spki(params: bytes, point: bytes) -> bytes:
    """SubjectPublicKeyInfo DER for an EC key from its CKA_EC_PARAMS/CKA_EC_POINT."""
    der: bytes = keys.PublicKeyInfo(
        {
            "algorithm": {"algorithm": "ec", "parameters": keys.ECDomainParameters.load(params)},
            "public_key": unwrap_ec_point(point),
        }
    ).dump()
    return der


def spki_of(public_key: Any) -> bytes:
    """SPKI of a python-pkcs11 public key object (reads its attributes in one call)."""
    if public_key.key_type == KeyType.RSA:
        a = public_key.get_attributes([Attribute.MODULUS, Attribute.PUBLIC_EXPONENT])
        return rsa_spki(a[Attribute.MODULUS], a[Attribute.PUBLIC_EXPONENT])
    if public_key.key_type == KeyType.EC:
        a = public_key.get_attributes([Attribute.EC_PARAMS, Attribute.EC_POINT])
        return ec_spki(a[Attribute.EC_PARAMS], a[Attribute.EC_POINT])
    raise HsmError(f"unsupported public key type {public_key.key_type!r}")


@functools.cache
def digest_info_prefix(hash_name: HashName) -> bytes:
    """DER of ``DigestInfo`` for ``hash_name`` minus the digest bytes.

    Built once per hash with asn1crypto (AlgorithmIdentifier with explicit NULL parameters,
    as RFC 8017 requires); signing then only concatenates, which matters in batches.
    """
    size = HASH_LEN[hash_name]
    der: bytes = algos.DigestInfo(
        {
            "digest_algorithm": {"algorithm": hash_name, "parameters": core.Null()},
            "digest": b"\0" * size,
        }
    ).dump()
    return der[:-size]


def ecdsa_der(raw: bytes) -> bytes:
    """PKCS#11 returns r||s; X.509/CMS want DER Ecdsa-Sig-Value SEQUENCE { r, s }.

    pyca's encoder (OpenSSL) gives the same bytes as asn1crypto's
    ``DSASignature.from_p1363(raw).dump()`` (a test checks) at a fraction of its cost.
    """
    half = len(raw) // 2
    return encode_dss_signature(int.from_bytes(raw[:half], "big"), int.from_bytes(raw[half:], "big"))
