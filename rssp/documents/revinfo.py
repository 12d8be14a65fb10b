"""Validation data for B-LT/B-LTA: the certificate paths, their OCSP responses and CRLs, checked complete.

pyHanko collects revocation data by validating certificates against a fetching
:class:`~pyhanko_certvalidator.ValidationContext`; what the responders returned stays in that context
(``ocsps``, ``crls``) and is what the DSS (PAdES) or the revocation-values attribute (CAdES) embeds.
A context in pyhanko-certvalidator's default *soft-fail* mode silently goes on when a responder is
down, which would produce a "B-LT" document without the data that makes it B-LT. So after fetching,
:func:`ensure_complete` re-validates every path **offline, hard-fail**, with only the collected
data: if that fails for lack of revocation data, a source the chain declares could not be reached
and the call raises :class:`~rssp.documents.model.UpstreamUnavailable`, before the HSM is asked
for anything. This holds whatever revocation mode the caller's context uses.

Failure mapping (fixed texts):

- revocation data missing (soft-fail context) or unobtainable (hard-fail context:
  ``InsufficientRevinfoError``) -> UpstreamUnavailable;
- the signer's certificate does not validate (untrusted, expired, revoked) -> DocumentError: the
  signature cannot be made at the level asked, and retrying will not help;
- a TSA certificate that does not validate -> UpstreamUnavailable (the TSA is unusable).

Only certificates of our own making are validated with the fetching context (the signer's, and
those of the TSAs that answered us): never a certificate taken from the client's document, whose
AIA, OCSP and CRL URLs would make the service fetch addresses an attacker chose. (So when a
B-LTA is added to a document that already has document timestamps from another TSA, that TSA's
validation data is not added: it is the earlier signer's to keep; the same TSA's data is in.)

The engines share this module (PAdES DSS, CAdES revocation values, ``validationInfo``).
"""

from __future__ import annotations

from collections.abc import Iterable

from asn1crypto import cms, x509
from pyhanko.sign.general import extract_certificate_info
from pyhanko.sign.signers import Signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.validation.dss import enumerate_ocsp_certs
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import InsufficientRevinfoError, PathBuildingError, PathValidationError
from pyhanko_certvalidator.path import ValidationPath

from rssp.documents.model import DocumentError, UpstreamUnavailable, ValidationInfo
from rssp.documents.timestamps import TSA_UNTRUSTED

REVINFO_UNAVAILABLE = "Revocation data (OCSP or CRL) for the certificate chain could not be fetched"
SIGNER_INVALID = "The signing certificate could not be validated (untrusted, expired or revoked)"


def _revinfo_missing(exc: BaseException) -> bool:
    """Whether the chain of causes says revocation data was missing (rather than bad)."""
    seen: BaseException | None = exc
    while seen is not None:
        if isinstance(seen, InsufficientRevinfoError):
            return True
        seen = seen.__cause__ or seen.__context__
    return False


async def signer_path(signer: Signer, vc: ValidationContext) -> ValidationPath:
    """The signer's path, validated online (which fetches its revocation data into ``vc``).

    No key usage is required here: the CA decides the key usage, and B-LT needs the chain and its
    revocation data (pyHanko's own pre-signing check asks for non-repudiation by default, which
    would refuse a digitalSignature-only credential for no reason of the document's).
    """
    validator = CertificateValidator(signer.signing_cert, intermediate_certs=signer.cert_registry,
                                     validation_context=vc)
    try:
        path: ValidationPath = await validator.async_validate_usage(set())
        return path
    except (PathBuildingError, PathValidationError) as exc:
        if _revinfo_missing(exc):
            raise UpstreamUnavailable(REVINFO_UNAVAILABLE) from exc
        raise DocumentError(SIGNER_INVALID) from exc


async def token_paths(tokens: Iterable[cms.SignedData], known: list[ValidationPath],
                      vc: ValidationContext) -> list[ValidationPath]:
    """Paths for the TSAs that signed ``tokens`` (ours) and are not the leaf of a ``known`` path."""
    have = {path.leaf.dump() for path in known if path.leaf is not None}
    found: list[ValidationPath] = []
    for signed_data in tokens:
        info = extract_certificate_info(signed_data)
        if info.signer_cert.dump() in have:
            continue
        validator = CertificateValidator(info.signer_cert, intermediate_certs=info.other_certs, validation_context=vc)
        try:
            found.append(await validator.async_validate_usage(set(), {"time_stamping"}))
        except (PathBuildingError, PathValidationError) as exc:
            raise UpstreamUnavailable(TSA_UNTRUSTED) from exc
        have.add(info.signer_cert.dump())
    return found


async def gather(signer: Signer, timestamper: TimeStamper | None, vc: ValidationContext) -> list[ValidationPath]:
    """The signer's path then the TSA's, their revocation data fetched into ``vc`` and checked complete.

    Runs before the HSM signs: a responder that is down refuses the call without spending a signature.
    """
    paths = [await signer_path(signer, vc)]
    if timestamper is not None:
        paths += [path async for path in timestamper.validation_paths(vc)]
    await ensure_complete(paths, vc)
    return paths


async def cover_tokens(tokens: Iterable[cms.ContentInfo], paths: list[ValidationPath],
                       vc: ValidationContext) -> list[ValidationPath]:
    """Paths (revocation data fetched, checked complete) for TSAs whose real tokens were not yet covered."""
    new = await token_paths((token["content"] for token in tokens), paths, vc)
    if new:
        await ensure_complete(new, vc)
    return new


async def ensure_complete(paths: list[ValidationPath], vc: ValidationContext) -> None:
    """Every path validates offline, hard-fail, from what ``vc`` collected (see the module docstring)."""
    certs = _certificates(paths, vc)
    offline = ValidationContext(trust_roots=[path.trust_anchor for path in paths], other_certs=certs,
                                ocsps=vc.ocsps, crls=vc.crls, allow_fetching=False, revocation_mode="hard-fail")
    for path in paths:
        leaf = path.leaf
        if not isinstance(leaf, x509.Certificate):  # a signer's path ends in its certificate
            raise TypeError("a validation path that ends in an attribute certificate")
        try:
            await CertificateValidator(leaf, intermediate_certs=certs, validation_context=offline).async_validate_usage(
                set())
        except (PathBuildingError, PathValidationError) as exc:
            # the path validated online a moment ago: offline, only the revocation data can be short
            raise UpstreamUnavailable(REVINFO_UNAVAILABLE) from exc


def _certificates(paths: Iterable[ValidationPath], vc: ValidationContext) -> list[x509.Certificate]:
    """The paths' certificates (roots included, as pyHanko's DSS does) and the OCSP responders', once each."""
    seen: dict[bytes, x509.Certificate] = {}
    every = [cert for path in paths for cert in path]
    every += [cert for response in vc.ocsps for cert in enumerate_ocsp_certs(response)]
    for cert in every:
        seen.setdefault(cert.dump(), cert)
    return list(seen.values())


def collected(paths: list[ValidationPath], vc: ValidationContext) -> ValidationInfo:
    """CSC ``validationInfo``: what was fetched and embedded for these paths (DER, no duplicates)."""
    return ValidationInfo(
        ocsp=list(dict.fromkeys(response.dump() for response in vc.ocsps)),
        crl=list(dict.fromkeys(crl.dump() for crl in vc.crls)),
        certificates=[cert.dump() for cert in _certificates(paths, vc)],
    )
