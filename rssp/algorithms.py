"""CSC algorithm identifiers and how they map onto HSM mechanisms.

CSC names algorithms by OID. A credential advertises the OIDs it can do in ``key.algo``
(pyHanko refuses a list with only ``rsaEncryption``, so combined OIDs are listed too), and
``signHash`` resolves ``signAlgo`` + ``hashAlgorithmOID`` + ``signAlgoParams`` into one
:class:`~rssp.hsm.types.SignMechanism` here, before anything reaches the HSM.
"""

from __future__ import annotations

from dataclasses import dataclass

from asn1crypto import algos

from rssp.errors import invalid_param, invalid_request, missing_param
from rssp.hash_algorithms import HASHES, SIGNING_HASHES
from rssp.hsm.types import HashName, SignMechanism

# the signing hashes' views of rssp.hash_algorithms, by the keys signing code looks them up with
HASH_OIDS: dict[str, HashName] = {HASHES[name].oid: name for name in SIGNING_HASHES}
HASH_OID_BY_NAME: dict[HashName, str] = {name: HASHES[name].oid for name in SIGNING_HASHES}
DIGEST_SIZES: dict[HashName, int] = {name: HASHES[name].size for name in SIGNING_HASHES}
HASH_DISPLAY: dict[HashName, str] = {name: HASHES[name].display for name in SIGNING_HASHES}

_SIGNED_DIGEST = algos.SignedDigestAlgorithmId  # asn1crypto's signature OIDs ("sha256_rsa", "rsassa_pss", ...)
RSA_ENCRYPTION = _SIGNED_DIGEST.unmap("rsassa_pkcs1v15")  # 1.2.840.113549.1.1.1
RSASSA_PSS = _SIGNED_DIGEST.unmap("rsassa_pss")  # 1.2.840.113549.1.1.10
EC_PUBLIC_KEY = "1.2.840.10045.2.1"  # id-ecPublicKey, a key OID that CSC also accepts as signAlgo


@dataclass(frozen=True)
class SignAlgo:
    """One signature algorithm OID: its key type, scheme and implied hash (if any)."""

    oid: str
    key_kind: str  # "rsa" | "ec"
    scheme: str  # "pkcs1v15" | "pss" | "ecdsa"
    hash: HashName | None


def _with_hashes(key_kind: str, scheme: str, suffix: str) -> list[SignAlgo]:
    """The combined OIDs (``sha256WithRSAEncryption``, ``ecdsa-with-SHA256``, ...) of each signing hash."""
    return [SignAlgo(_SIGNED_DIGEST.unmap(f"{h}_{suffix}"), key_kind, scheme, h) for h in SIGNING_HASHES]


SIGN_ALGOS: dict[str, SignAlgo] = {
    a.oid: a
    for a in (
        SignAlgo(RSA_ENCRYPTION, "rsa", "pkcs1v15", None),
        *_with_hashes("rsa", "pkcs1v15", "rsa"),
        SignAlgo(RSASSA_PSS, "rsa", "pss", None),
        SignAlgo(EC_PUBLIC_KEY, "ec", "ecdsa", None),
        *_with_hashes("ec", "ecdsa", "ecdsa"),
    )
}


def sign_algo_oid(key_kind: str, hash_name: str) -> str:
    """The combined signature OID of a key kind and hash (``("ec", "sha256")`` → ecdsa-with-SHA256)."""
    return next(a.oid for a in SIGN_ALGOS.values() if a.key_kind == key_kind and a.hash == hash_name)

CURVE_OIDS = {"P-256": "1.2.840.10045.3.1.7", "P-384": "1.3.132.0.34"}


def key_algos(key_kind: str) -> list[str]:
    """The ``key.algo`` list of a credential: every OID its key can sign with."""
    return [oid for oid, algo in SIGN_ALGOS.items() if algo.key_kind == key_kind]


def hash_from_oid(oid: str, param: str = "hashAlgorithmOID") -> HashName:
    try:
        return HASH_OIDS[oid]
    except KeyError:
        raise invalid_param(param) from None


def oid_for_length(digest: bytes) -> str:
    """The SHA-2 OID of a digest's length (unambiguous among 32, 48, 64 bytes), for CSC v1
    requests that send digests without naming their algorithm."""
    by_size = {size: name for name, size in DIGEST_SIZES.items()}
    if len(digest) not in by_size:
        raise invalid_request("Invalid digest value length")
    return HASH_OID_BY_NAME[by_size[len(digest)]]


def check_digest(digest: bytes, hash_name: str) -> None:
    """A digest must have its algorithm's length (any algorithm of :mod:`rssp.hash_algorithms`)."""
    if len(digest) != HASHES[hash_name].size:
        raise invalid_request("Invalid digest value length")


def resolve_mechanism(
    key_kind: str,
    sign_algo: str,
    hash_oid: str | None,
    params_der: bytes | None,
    *,
    key_bits: int | None = None,
) -> SignMechanism:
    """Turn the CSC algorithm fields of a signing request into one HSM mechanism.

    Raises the CSC error for each inconsistency: an OID the key cannot do, a missing hash
    algorithm for a bare key algorithm, or a hash that contradicts the one ``signAlgo`` implies.
    ``key_bits`` (the RSA modulus size) bounds the PSS salt length.
    """
    algo = SIGN_ALGOS.get(sign_algo)
    if algo is None or algo.key_kind != key_kind:
        raise invalid_param("signAlgo")
    requested = hash_from_oid(hash_oid) if hash_oid is not None else None
    if algo.scheme == "pss":
        return _pss_mechanism(params_der, requested, key_bits)
    hash_name = algo.hash or requested
    if hash_name is None:
        raise missing_param("string", "hashAlgorithmOID")
    if requested is not None and requested != hash_name:
        raise invalid_param("hashAlgorithmOID")
    return SignMechanism(scheme=algo.scheme, hash=hash_name)  # type: ignore[arg-type]


def _pss_mechanism(params_der: bytes | None, requested: HashName | None, key_bits: int | None) -> SignMechanism:
    """RSASSA-PSS takes its hash, MGF and salt from ``signAlgoParams`` (RFC 4055 params)."""
    if params_der is None:
        raise missing_param("string", "signAlgoParams")
    try:
        params = algos.RSASSAPSSParams.load(params_der)
        hash_name = params["hash_algorithm"]["algorithm"].native
        mgf = params["mask_gen_algorithm"]
        mgf_hash = mgf["parameters"]["algorithm"].native
        salt_len = int(params["salt_length"].native)
        trailer = params["trailer_field"].native
        ok = mgf["algorithm"].native == "mgf1" and trailer in ("trailer_field_bc", 1)
    except Exception:  # asn1crypto raises a zoo of types on malformed DER
        raise invalid_param("signAlgoParams") from None
    if not ok or hash_name not in DIGEST_SIZES or mgf_hash not in DIGEST_SIZES or not 0 <= salt_len <= 512:
        raise invalid_param("signAlgoParams")
    # RFC 8017 §9.1.1: the encoded message, ceil((modBits - 1) / 8) bytes, holds hLen + sLen + 2.
    if key_bits is not None and salt_len > (key_bits + 6) // 8 - DIGEST_SIZES[hash_name] - 2:
        raise invalid_param("signAlgoParams")
    if requested is not None and requested != hash_name:
        raise invalid_param("hashAlgorithmOID")
    return SignMechanism(scheme="pss", hash=hash_name, mgf_hash=mgf_hash, salt_len=salt_len)
