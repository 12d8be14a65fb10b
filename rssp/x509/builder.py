"""Build PKCS#10 requests and X.509 certificates whose private key we never hold.

Private keys live in the HSM, so nothing here takes a key object: every signature goes
through a :data:`DigestSigner`, an async callback that receives the *digest* of the
to-be-signed bytes and returns the raw signature value (PKCS#1 v1.5 for RSA, DER
``Ecdsa-Sig-Value`` for EC) — exactly what :meth:`rssp.hsm.Hsm.sign` returns.

All structures are asn1crypto objects; no DER is written by hand.
"""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import datetime, UTC
from typing import Any, Protocol
from collections.abc import Awaitable, Callable, Iterable

from asn1crypto import algos, core, csr, keys, x509
from cryptography import x509 as cx509
from cryptography.x509.oid import NameOID

from rssp.hash_algorithms import SIGNING_HASHES
from rssp.hsm.types import GeneratedKey, KeySpec, SignMechanism

DigestSigner = Callable[[bytes], Awaitable[bytes]]
"""Digest in, raw signature out (PKCS#1 v1.5 over DigestInfo for RSA, DER ECDSA for EC)."""

_SUPPORTED_HASHES = SIGNING_HASHES


@dataclass(frozen=True)
class SigningKeyRef:
    """A signing key we can only ask to sign digests, plus its public key.

    The public key is needed anyway (SPKI in CSRs, AKI in certificates) and tells us which
    signature algorithm identifier to write, so callers only pick the hash.
    """

    signer: DigestSigner
    public_key_der: bytes
    hash: str = "sha256"

    def __post_init__(self) -> None:
        if self.hash not in _SUPPORTED_HASHES:
            raise ValueError(f"unsupported hash {self.hash!r}; one of {', '.join(_SUPPORTED_HASHES)}")
        if self.key_algorithm not in ("rsa", "ec"):
            raise ValueError(f"unsupported key algorithm {self.key_algorithm!r}; RSA or EC only")

    @property
    def public_key_info(self) -> keys.PublicKeyInfo:
        """The parsed SubjectPublicKeyInfo."""
        return keys.PublicKeyInfo.load(self.public_key_der)

    @property
    def key_algorithm(self) -> str:
        """``"rsa"`` or ``"ec"`` (asn1crypto's name for the SPKI algorithm)."""
        name: str = self.public_key_info.algorithm
        return name

    @property
    def signature_algorithm_name(self) -> str:
        """asn1crypto name of the signature algorithm, e.g. ``sha256_rsa`` or ``sha384_ecdsa``."""
        suffix = "rsa" if self.key_algorithm == "rsa" else "ecdsa"
        return f"{self.hash}_{suffix}"

    def signature_algorithm(self) -> algos.SignedDigestAlgorithm:
        """AlgorithmIdentifier for the signature: NULL params for RSA (RFC 4055), none for ECDSA (RFC 5758)."""
        value: dict[str, Any] = {"algorithm": self.signature_algorithm_name}
        if self.key_algorithm == "rsa":
            value["parameters"] = core.Null()
        return algos.SignedDigestAlgorithm(value)

    async def sign(self, data: bytes) -> bytes:
        """Hash ``data`` here and let the signer sign the digest (the HSM only sees digests)."""
        return await self.signer(hashlib.new(self.hash, data).digest())


def preferred_hash(public_key_der: bytes) -> str:
    """The hash matching the key's strength: sha384 for P-384 (and larger curves), else sha256."""
    info = keys.PublicKeyInfo.load(public_key_der)
    if info.algorithm == "ec" and info.curve[1] in ("secp384r1", "secp521r1"):
        return "sha384"
    return "sha256"



class SigningHsm(Protocol):
    """The part of :class:`rssp.hsm.Hsm` that certificate and CSR signing needs."""

    async def generate_key_pair(self, spec: KeySpec, label: str) -> GeneratedKey: ...

    async def sign(self, key_id: str, mechanism: SignMechanism, digest: bytes) -> bytes: ...


def hsm_signing_key(hsm: SigningHsm, key_id: str, public_key_der: bytes) -> SigningKeyRef:
    """A :class:`SigningKeyRef` whose signatures are made by ``hsm`` with key ``key_id``.

    Picks the hash with :func:`preferred_hash` and PKCS#1 v1.5 for RSA (the widest-accepted
    certificate signature), ECDSA for EC. Core uses it for ``manages/authorize`` CSRs, the
    local CA for certificates.
    """
    hash_name = preferred_hash(public_key_der)
    scheme = "pkcs1v15" if keys.PublicKeyInfo.load(public_key_der).algorithm == "rsa" else "ecdsa"
    mechanism = SignMechanism(scheme=scheme, hash=hash_name)  # type: ignore[arg-type]

    async def signer(digest: bytes) -> bytes:
        return await hsm.sign(key_id, mechanism, digest)

    return SigningKeyRef(signer=signer, public_key_der=public_key_der, hash=hash_name)


# --- names -------------------------------------------------------------------------------

_EXTRA_ATTRIBUTE_NAMES: dict[str, cx509.ObjectIdentifier] = {
    "CN": NameOID.COMMON_NAME,
    "commonName": NameOID.COMMON_NAME,
    "O": NameOID.ORGANIZATION_NAME,
    "organizationName": NameOID.ORGANIZATION_NAME,
    "OU": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "organizationalUnitName": NameOID.ORGANIZATIONAL_UNIT_NAME,
    "C": NameOID.COUNTRY_NAME,
    "countryName": NameOID.COUNTRY_NAME,
    "L": NameOID.LOCALITY_NAME,
    "localityName": NameOID.LOCALITY_NAME,
    "ST": NameOID.STATE_OR_PROVINCE_NAME,
    "S": NameOID.STATE_OR_PROVINCE_NAME,
    "stateOrProvinceName": NameOID.STATE_OR_PROVINCE_NAME,
    "STREET": NameOID.STREET_ADDRESS,
    "DC": NameOID.DOMAIN_COMPONENT,
    "UID": NameOID.USER_ID,
    "serialNumber": NameOID.SERIAL_NUMBER,
    "SN": NameOID.SURNAME,
    "surname": NameOID.SURNAME,
    "GN": NameOID.GIVEN_NAME,
    "givenName": NameOID.GIVEN_NAME,
    "title": NameOID.TITLE,
    "E": NameOID.EMAIL_ADDRESS,
    "emailAddress": NameOID.EMAIL_ADDRESS,
    "organizationIdentifier": NameOID.ORGANIZATION_IDENTIFIER,
    "pseudonym": NameOID.PSEUDONYM,
}
# cryptography matches attribute names case-sensitively; operators type cn=, Cn=, CN=.
_ATTRIBUTE_NAMES = {
    variant: oid
    for name, oid in _EXTRA_ATTRIBUTE_NAMES.items()
    for variant in (name, name.lower(), name.upper())
}
# "CN=a, O=b" is not strict RFC 4514 but is what people paste; drop blanks after unescaped commas.
_BLANK_AFTER_COMMA = re.compile(r"(?<!\\),\s+")


def parse_subject(dn: str) -> x509.Name:
    """Parse ``CN=Taro Yamada,O=Example,C=JP`` (RFC 4514 order, most specific first).

    cryptography does the parsing and picks the string types (UTF8String for CN/O, so
    Japanese names survive; PrintableString for C); we convert through DER so the rest of
    this module deals in asn1crypto only.
    """
    text = _BLANK_AFTER_COMMA.sub(",", dn.strip())
    try:
        name = cx509.Name.from_rfc4514_string(text, attr_name_overrides=_ATTRIBUTE_NAMES)
    except ValueError as exc:
        raise ValueError(f"not a distinguished name (RFC 4514): {dn!r}") from exc
    if not list(name):
        raise ValueError("empty distinguished name")
    return x509.Name.load(name.public_bytes())


# --- PKCS#10 -----------------------------------------------------------------------------


def _extension_list(extensions: Iterable[x509.Extension | dict[str, Any]]) -> x509.Extensions:
    """Accept asn1crypto Extension objects or their dict form."""
    return x509.Extensions([ext if isinstance(ext, x509.Extension) else x509.Extension(ext) for ext in extensions])


async def build_csr(
    subject: x509.Name,
    key: SigningKeyRef,
    extensions: list[x509.Extension | dict[str, Any]] | None = None,
) -> bytes:
    """Return a PKCS#10 request (DER) signed by ``key``: the proof of possession a CA checks.

    ``extensions`` (e.g. a subjectAltName the RA asked for) go into an extensionRequest
    attribute; the attributes field itself is always present, as PKCS#10 requires.
    """
    attributes = []
    if extensions:
        attributes.append({"type": "extension_request", "values": [_extension_list(extensions)]})
    info = csr.CertificationRequestInfo(
        {
            "version": "v1",
            "subject": subject,
            "subject_pk_info": key.public_key_info,
            "attributes": attributes,
        }
    )
    signature = await key.sign(info.dump())
    request = csr.CertificationRequest(
        {
            "certification_request_info": info,
            "signature_algorithm": key.signature_algorithm(),
            "signature": signature,
        }
    )
    der: bytes = request.dump()
    return der


# --- certificates ------------------------------------------------------------------------


def random_serial() -> int:
    """A positive 159-bit serial: unpredictable (CA/B BR) and within RFC 5280's 20 octets."""
    while True:
        serial = secrets.randbits(159)
        if serial:
            return serial


def _time(when: datetime) -> x509.Time:
    """UTCTime up to 2049, GeneralizedTime from 2050 (RFC 5280 4.1.2.5); whole seconds, UTC."""
    if when.tzinfo is None:
        raise ValueError("certificate times must be timezone-aware")
    when = when.astimezone(UTC).replace(microsecond=0)
    if when.year < 2050:
        return x509.Time({"utc_time": when})
    return x509.Time({"general_time": when})


def _issuer_key_identifier(issuer_cert: x509.Certificate | None, issuer_key: SigningKeyRef) -> bytes:
    """The issuer's SKI if its certificate has one, else the RFC 5280 method-1 SHA-1 of its key."""
    if issuer_cert is not None and issuer_cert.key_identifier:
        ski: bytes = issuer_cert.key_identifier
        return ski
    sha1: bytes = issuer_key.public_key_info.sha1
    return sha1


def _extensions(
    *,
    subject_key: keys.PublicKeyInfo,
    authority_key_id: bytes,
    is_ca: bool,
    path_len: int | None,
    key_usage: set[str],
    ext_key_usage: list[str] | None,
) -> list[dict[str, Any]]:
    """The v3 extensions every certificate we issue carries (and optionally EKU)."""
    basic: dict[str, Any] = {"ca": is_ca}  # ca=False is the DEFAULT, so asn1crypto omits it (DER)
    if is_ca and path_len is not None:
        basic["path_len_constraint"] = path_len
    exts: list[dict[str, Any]] = [
        {"extn_id": "basic_constraints", "critical": True, "extn_value": basic},
        {"extn_id": "key_usage", "critical": True, "extn_value": set(key_usage)},
        {"extn_id": "key_identifier", "critical": False, "extn_value": subject_key.sha1},
        {
            "extn_id": "authority_key_identifier",
            "critical": False,
            "extn_value": {"key_identifier": authority_key_id},
        },
    ]
    if ext_key_usage:
        exts.append({"extn_id": "extended_key_usage", "critical": False, "extn_value": list(ext_key_usage)})
    return exts


async def issue_certificate(
    *,
    issuer_cert: x509.Certificate | None,
    issuer_key: SigningKeyRef,
    subject: x509.Name,
    subject_public_key_der: bytes,
    serial: int | None = None,
    not_before: datetime,
    not_after: datetime,
    is_ca: bool,
    key_usage: set[str],
    ext_key_usage: list[str] | None = None,
    path_len: int | None = None,
) -> bytes:
    """Build and sign a v3 certificate; ``issuer_cert=None`` makes it self-signed.

    ``key_usage`` uses asn1crypto's names (``digital_signature``, ``non_repudiation``,
    ``key_cert_sign``, ``crl_sign``, ...); ``ext_key_usage`` takes asn1crypto names or
    dotted OIDs. Returns DER.
    """
    if not key_usage:
        raise ValueError("key_usage must not be empty")
    if not_after <= not_before:
        raise ValueError("not_after must be later than not_before")
    subject_key = keys.PublicKeyInfo.load(subject_public_key_der)
    if issuer_cert is None and subject_key.dump() != issuer_key.public_key_info.dump():
        raise ValueError("self-signed certificate: subject key differs from the signing key")
    issuer = subject if issuer_cert is None else issuer_cert.subject
    tbs = x509.TbsCertificate(
        {
            "version": "v3",
            "serial_number": random_serial() if serial is None else serial,
            "signature": issuer_key.signature_algorithm(),
            "issuer": x509.Name.load(issuer.dump()),
            "validity": {"not_before": _time(not_before), "not_after": _time(not_after)},
            "subject": x509.Name.load(subject.dump()),
            "subject_public_key_info": subject_key,
            "extensions": _extensions(
                subject_key=subject_key,
                authority_key_id=_issuer_key_identifier(issuer_cert, issuer_key),
                is_ca=is_ca,
                path_len=path_len,
                key_usage=key_usage,
                ext_key_usage=ext_key_usage,
            ),
        }
    )
    signature = await issuer_key.sign(tbs.dump())
    cert = x509.Certificate(
        {
            "tbs_certificate": tbs,
            "signature_algorithm": issuer_key.signature_algorithm(),
            "signature_value": signature,
        }
    )
    der: bytes = cert.dump()
    return der
