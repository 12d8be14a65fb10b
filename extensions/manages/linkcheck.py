"""The checks ``manages/linkCert`` makes before a certificate turns a key into a credential.

JT2A 3.1.1.4: the public key cannot be altered before certification, so the certificate must
carry exactly the key generated in the HSM. It must also come from the CA that enrolled the key
(its chain leads to one of that CA's configured anchors, validated now, without fetching), allow
signing (digitalSignature or nonRepudiation), and be valid now.
"""

from __future__ import annotations

from datetime import datetime, UTC

from asn1crypto import x509 as asn1_x509
from cryptography import x509 as cx509
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import ValidationError
from pyhanko_certvalidator.errors import PathBuildingError

from rssp.api.parse import decode_certificates
from rssp.errors import CSCError, invalid_param, invalid_request

KEY_MISMATCH = "Certificate does not match the credential key"
UNTRUSTED = "Certificate chain is not trusted for this CA"
BAD_STATE = "Credential is not in a state that allows this"
NO_SIGNING_USAGE = "Certificate key usage does not allow signing"
NOT_VALID_NOW = "Certificate is not valid at this time"
KEY_IN_USE = "The certificate's public key is already linked to another credential"
MAX_CERTIFICATES = 10


def parse_certificates(values: list[str]) -> list[asn1_x509.Certificate]:
    """Base64 DER certificates, EE first; anything unparseable is an invalid ``certificates``.

    The key-usage check reads certificates with pyca/cryptography too, so they must load there
    as well.
    """
    if len(values) > MAX_CERTIFICATES:
        raise invalid_param("certificates")
    chain = decode_certificates(values, b64_error="Invalid parameter certificates")
    try:
        for cert in chain:
            cx509.load_der_x509_certificate(cert.dump())
    except ValueError:
        raise invalid_param("certificates") from None
    return chain


def _check_key_usage(der: bytes) -> None:
    try:
        usage = cx509.load_der_x509_certificate(der).extensions.get_extension_for_class(cx509.KeyUsage).value
    except cx509.ExtensionNotFound:
        return  # no keyUsage extension: RFC 5280 places no restriction
    except ValueError:
        raise invalid_param("certificates") from None
    if not (usage.digital_signature or usage.content_commitment):
        raise invalid_request(NO_SIGNING_USAGE)


async def check_certificate(chain: list[asn1_x509.Certificate], public_key: bytes, anchors: tuple[bytes, ...]) -> None:
    """Raise the CSC error of the first check that fails; return if the certificate may be linked."""
    ee = chain[0]
    if ee.public_key.dump() != public_key:
        raise invalid_request(KEY_MISMATCH)
    now = datetime.now(UTC)
    if not ee.not_valid_before <= now <= ee.not_valid_after:
        raise invalid_request(NOT_VALID_NOW)
    _check_key_usage(ee.dump())
    if not anchors:
        raise invalid_request(UNTRUSTED)
    context = ValidationContext(
        trust_roots=[asn1_x509.Certificate.load(a) for a in anchors], moment=now, allow_fetching=False,
        revocation_mode="soft-fail",
    )
    validator = CertificateValidator(ee, intermediate_certs=chain[1:], validation_context=context)
    try:
        await validator.async_validate_path()
    except (ValidationError, PathBuildingError):
        raise invalid_request(UNTRUSTED) from None
    except CSCError:
        raise
    except (ValueError, TypeError):
        raise invalid_request(UNTRUSTED) from None
