"""The built-in CA: a self-signed root whose private key lives in the HSM.

It exists so that a fresh installation can issue signing certificates with no outside CA
(``rssp init``, demos, tests). It only ever sees PKCS#10 requests, checks their proof of
possession, and issues end-entity signing certificates chained directly to its root.
"""

from __future__ import annotations

from datetime import datetime, timedelta, UTC
from typing import Any

from asn1crypto import csr as asn1_csr
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509 as cx509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.hazmat.primitives.serialization import load_der_public_key

from rssp.ca import CAError, IssuedCertificate
from rssp.hsm.types import KeySpec
from rssp.x509.builder import SigningHsm, hsm_signing_key, issue_certificate, parse_subject

DEFAULT_KEY_SPEC = KeySpec("ec", curve="P-256")  # the local CA's own key
CA_KEY_LABEL = "local-ca"
DEFAULT_EE_VALIDITY_DAYS = 730
MIN_RSA_BITS = 2048
ALLOWED_CURVES = (ec.SECP256R1, ec.SECP384R1, ec.SECP521R1)
# Issue certificates valid from a little in the past so relying parties with a slow clock accept them.
CLOCK_SKEW = timedelta(minutes=5)


class LocalCAConnector:
    """A :class:`rssp.ca.CAConnector` backed by a root certificate and an HSM-held key."""

    def __init__(
        self,
        hsm: SigningHsm,
        *,
        key_id: str,
        certificate: asn1_x509.Certificate | bytes,
        validity_days_ee: int = DEFAULT_EE_VALIDITY_DAYS,
    ) -> None:
        if isinstance(certificate, bytes):
            certificate = asn1_x509.Certificate.load(certificate)
        self._hsm = hsm
        self._key_id = key_id
        self._certificate = certificate
        self._validity_days_ee = validity_days_ee
        self._key = hsm_signing_key(hsm, key_id, certificate.public_key.dump())

    # --- set-up and configuration --------------------------------------------------------

    @classmethod
    async def create(
        cls,
        hsm: SigningHsm,
        *,
        name: str,
        key_spec: KeySpec = DEFAULT_KEY_SPEC,
        validity_days: int = 3650,
    ) -> tuple[LocalCAConnector, dict[str, Any]]:
        """Generate the CA key in the HSM and self-sign a root; return it and its rssp.toml section."""
        generated = await hsm.generate_key_pair(key_spec, CA_KEY_LABEL)
        key = hsm_signing_key(hsm, generated.key_id, generated.public_key_der)
        now = datetime.now(UTC)
        subject = parse_subject(_rfc4514_cn(name))
        root_der = await issue_certificate(
            issuer_cert=None,
            issuer_key=key,
            subject=subject,
            subject_public_key_der=generated.public_key_der,
            not_before=now - CLOCK_SKEW,
            not_after=now + timedelta(days=validity_days),
            is_ca=True,
            key_usage={"key_cert_sign", "crl_sign"},
            path_len=0,
        )
        connector = cls(hsm, key_id=generated.key_id, certificate=root_der)
        return connector, connector.config()

    @classmethod
    def from_config(cls, config: dict[str, Any], hsm: SigningHsm) -> LocalCAConnector:
        """Rebuild the connector from its rssp.toml section (the output of :meth:`config`)."""
        try:
            key_id = config["key_id"]
            _, _, root_der = pem.unarmor(config["certificate_pem"].encode("ascii"))
        except (KeyError, ValueError, AttributeError) as exc:
            raise CAError(f"local CA configuration is incomplete or malformed: {exc}") from exc
        return cls(
            hsm,
            key_id=key_id,
            certificate=root_der,
            validity_days_ee=int(config.get("validity_days_ee", DEFAULT_EE_VALIDITY_DAYS)),
        )

    def config(self) -> dict[str, Any]:
        """The rssp.toml section describing this CA (no secrets: the key stays in the HSM)."""
        return {
            "connector": "local",
            "key_id": self._key_id,
            "certificate_pem": pem.armor("CERTIFICATE", self._certificate.dump()).decode("ascii"),
            "validity_days_ee": self._validity_days_ee,
        }

    # --- CAConnector ---------------------------------------------------------------------

    @property
    def certificate(self) -> asn1_x509.Certificate:
        """The root certificate."""
        return self._certificate

    def trust_anchors(self) -> list[bytes]:
        """Our certificates chain to this single root."""
        return [self._certificate.dump()]

    async def issue(self, csr_der: bytes, *, profile: str = "signing") -> IssuedCertificate:
        """Check the CSR's proof of possession and key, then issue a signing certificate."""
        if profile != "signing":
            raise CAError(f"unknown certificate profile {profile!r}")
        request = _load_csr(csr_der)
        _check_proof_of_possession(csr_der)
        info = request["certification_request_info"]
        _check_key(info["subject_pk_info"].dump())
        cert_der = await issue_certificate(
            issuer_cert=self._certificate,
            issuer_key=self._key,
            subject=info["subject"],
            subject_public_key_der=info["subject_pk_info"].dump(),
            not_before=datetime.now(UTC) - CLOCK_SKEW,
            not_after=self._ee_not_after(),
            is_ca=False,
            key_usage={"digital_signature", "non_repudiation"},
        )
        return IssuedCertificate(certificate=cert_der, chain=self.trust_anchors())

    def _ee_not_after(self) -> datetime:
        """``validity_days_ee`` from now, but never past the root's own expiry."""
        wanted = datetime.now(UTC) + timedelta(days=self._validity_days_ee)
        return min(wanted, self._certificate.not_valid_after)


def _rfc4514_cn(name: str) -> str:
    """``CN=<name>`` with RFC 4514 escaping, so a CA name with commas or '+' stays one CN."""
    attr = cx509.NameAttribute(cx509.oid.NameOID.COMMON_NAME, name)
    return attr.rfc4514_string()


def _load_csr(csr_der: bytes) -> asn1_csr.CertificationRequest:
    """Parse eagerly so malformed input becomes a CAError, not an exception deep in issuing."""
    try:
        request = asn1_csr.CertificationRequest.load(csr_der, strict=True)
        request.native  # noqa: B018 - force full parsing of nested structures
    except (ValueError, TypeError) as exc:
        raise CAError("CSR is not a valid PKCS#10 request") from exc
    return request


def _check_proof_of_possession(csr_der: bytes) -> None:
    """The requester must hold the private key: the CSR's self-signature has to verify."""
    try:
        valid = cx509.load_der_x509_csr(csr_der).is_signature_valid
    except (ValueError, UnsupportedAlgorithm) as exc:  # unparseable, or a key type it can't verify
        raise CAError("CSR signature does not verify") from exc
    if not valid:
        raise CAError("CSR signature does not verify")


def _check_key(public_key_der: bytes) -> None:
    """Only keys a relying party will accept for signatures: RSA >= 2048 or a NIST curve."""
    try:
        key = load_der_public_key(public_key_der)
    except (ValueError, UnsupportedAlgorithm) as exc:
        raise CAError("CSR public key cannot be parsed") from exc
    if isinstance(key, rsa.RSAPublicKey):
        if key.key_size < MIN_RSA_BITS:
            raise CAError(f"RSA key of {key.key_size} bits is too short (minimum {MIN_RSA_BITS})")
        return
    if isinstance(key, ec.EllipticCurvePublicKey):
        if not isinstance(key.curve, ALLOWED_CURVES):
            raise CAError(f"EC curve {key.curve.name} is not accepted")
        return
    raise CAError("only RSA and EC keys are accepted")

