"""CAdES-B-LT validation data: the chains of the signer and of the TSAs, with their OCSP responses
and CRLs fetched live, placed where ETSI EN 319 122-1 puts them.

Where: EN 319 122-1 (V1.1.1 and later, clause 6.3, table of the baseline levels) gives the
certificate-values and revocation-values unsigned attributes (RFC 5126 CAdES-X-L,
id-aa-ets-certValues / id-aa-ets-revocationValues) cardinality 0 at B-LT: the certificates go into
SignedData.certificates and the revocation data into SignedData.crls, OCSP responses as the
``other`` RevocationInfoChoice with id-ri-ocsp-response and the OCSPResponse encoding (clause
5.4.2.2, RFC 5940). So we write those two fields and no certValues/revocationValues attribute;
the archive-time-stamp-v3's ats-hash-index-v3 then covers them item by item.

How: pyhanko-certvalidator validates each certificate against the validation context the caller
gives; its fetchers bring the OCSP responses and CRLs and the context keeps them (the way
pyHanko's own PAdES LTV collects them, ``pyhanko.sign.validation.dss.collect_validation_info``).
Whatever the context's revocation policy, we then require that every certificate of the path that
declares a revocation source has an OCSP response or a CRL: otherwise a responder failed, and the
signature would not be B-LT (UpstreamUnavailable, before anything is signed when it is the signer).
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass, field

from asn1crypto import cms, crl, keys, ocsp, x509
from pyhanko.sign.general import extract_certificate_info
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import (
    CertificateFetchError,
    InsufficientRevinfoError,
    PathBuildingError,
    PathValidationError,
    RevokedError,
    ValidationError,
)
from pyhanko_certvalidator.path import ValidationPath

from rssp.documents.model import DocumentError, UpstreamUnavailable, ValidationInfo

REVOCATION_FAILED = "revocation data for the certificate chain could not be fetched"


@dataclass
class Collected:
    """Validation data gathered for one output, deduplicated by encoding, in the order found."""

    certificates: dict[bytes, x509.Certificate] = field(default_factory=dict)
    ocsps: dict[bytes, ocsp.OCSPResponse] = field(default_factory=dict)
    crls: dict[bytes, crl.CertificateList] = field(default_factory=dict)
    validated: set[bytes] = field(default_factory=set)  # certificates whose own path was validated

    def certificate_choices(self) -> list[bytes]:
        """SignedData.certificates elements (a Certificate is its own CertificateChoices)."""
        return list(self.certificates)

    def revocation_choices(self) -> list[bytes]:
        """SignedData.crls elements: CRLs as they are, OCSP responses as id-ri-ocsp-response (RFC 5940)."""
        others = [cms.RevocationInfoChoice(name="other", value={
            "other_rev_info_format": "ocsp_response", "other_rev_info": response}).dump()
            for response in self.ocsps.values()]
        return [*self.crls, *others]

    def validation_info(self) -> ValidationInfo:
        return ValidationInfo(ocsp=list(self.ocsps), crl=list(self.crls), certificates=list(self.certificates))


@asynccontextmanager
async def session(factory: Callable[[], ValidationContext] | None) -> AsyncIterator[ValidationContext]:
    """One validation context for one output: what it fetched once (the intermediate's CRL, say)
    serves the signer and the TSAs alike; closed (its own fetchers, if any) at the end."""
    if factory is None:
        raise UpstreamUnavailable("no validation context for revocation data")
    vc = factory()
    try:
        yield vc
    finally:
        await vc.aclose()


async def collect(vc: ValidationContext, cert: x509.Certificate, others: list[x509.Certificate],
                  into: Collected) -> None:
    """Validate ``cert`` (``others``: candidate intermediates) and keep its path's certificates and
    the OCSP responses and CRLs fetched for it in ``into``.

    A revoked or untrusted certificate cannot make a long-term signature: DocumentError. A responder
    that did not answer: UpstreamUnavailable.
    """
    if cert.dump() in into.validated:
        return
    path = await _validate(vc, cert, others)
    _require_revocation(path, vc)
    _keep(path, vc, into)
    into.validated.add(cert.dump())


async def collect_timestamp(vc: ValidationContext, token: cms.ContentInfo, into: Collected) -> None:
    """The same for the TSA that signed a time-stamp token (its certificates come with the token)."""
    try:
        info = extract_certificate_info(token["content"])
    except (ValueError, KeyError, IndexError, TypeError) as exc:  # no TSA certificate to validate
        raise UpstreamUnavailable("the time-stamp token does not carry its TSA's certificate") from exc
    await collect(vc, info.signer_cert, list(info.other_certs), into)


async def _validate(vc: ValidationContext, cert: x509.Certificate, others: list[x509.Certificate]) -> ValidationPath:
    validator = CertificateValidator(cert, intermediate_certs=others, validation_context=vc)
    try:
        path: ValidationPath = await validator.async_validate_usage(key_usage=set())
        return path
    except (InsufficientRevinfoError, CertificateFetchError) as exc:  # a responder or AIA fetch failed
        raise UpstreamUnavailable(REVOCATION_FAILED) from exc
    except RevokedError as exc:
        raise DocumentError("a certificate of the chain is revoked") from exc
    except (PathBuildingError, PathValidationError, ValidationError) as exc:
        raise DocumentError("the certificate chain does not validate") from exc
    except OSError as exc:
        raise UpstreamUnavailable(REVOCATION_FAILED) from exc


def _require_revocation(path: ValidationPath, vc: ValidationContext) -> None:
    """Every certificate below the trust anchor that names an OCSP responder or a CRL has one."""
    chain = list(path.iter_certs(include_root=False))
    issuer_keys = [path.trust_anchor.authority.public_key, *(c.public_key for c in chain[:-1])]
    for cert, issuer_key in zip(chain, issuer_keys, strict=True):
        if not (cert.ocsp_urls or cert.crl_distribution_points):
            continue
        if not (any(_ocsp_covers(r, cert, issuer_key) for r in vc.ocsps)
                or any(c["tbs_cert_list"]["issuer"] == cert.issuer for c in vc.crls)):
            raise UpstreamUnavailable(REVOCATION_FAILED)


def _ocsp_covers(response: ocsp.OCSPResponse, cert: x509.Certificate, issuer_key: keys.PublicKeyInfo) -> bool:
    basic = response.basic_ocsp_response
    if basic is None:
        return False
    for single in basic["tbs_response_data"]["responses"]:
        cert_id = single["cert_id"]
        key_hash = hashlib.new(cert_id["hash_algorithm"]["algorithm"].native, bytes(issuer_key["public_key"]))
        if (cert_id["serial_number"].native == cert.serial_number
                and cert_id["issuer_key_hash"].native == key_hash.digest()):
            return True
    return False


def _keep(path: ValidationPath, vc: ValidationContext, into: Collected) -> None:
    for cert in path:
        into.certificates.setdefault(cert.dump(), cert)
    for response in vc.ocsps:
        into.ocsps.setdefault(response.dump(), response)
        basic = response.basic_ocsp_response
        for responder in basic["certs"] if basic is not None and basic["certs"].native else ():
            into.certificates.setdefault(responder.dump(), responder)
    for revocation_list in vc.crls:
        into.crls.setdefault(revocation_list.dump(), revocation_list)
