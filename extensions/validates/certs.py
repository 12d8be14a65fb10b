"""``validates/validCert``: a certificate's path, usage and revocation status at a time.

pyhanko-certvalidator builds and validates the path to a configured anchor (the chain the
client sends only helps path building; it is never trusted by itself), checks revocation
of every certificate that declares a source (OCSP first, then CRL: certvalidator asks the
responder and falls back to the CRL distribution points), at ``validationTime`` or now.
Its errors are mapped to EN 319 102-1 sub-indications by pyHanko's own mapping
(``handle_certvalidator_errors``), refined for unreachable revocation sources (``TRY_LATER``).
"""

from __future__ import annotations

import base64
from dataclasses import dataclass, field
from typing import Any

from asn1crypto import crl, ocsp, x509
from pyhanko.sign.ades.report import AdESIndeterminate
from pyhanko.sign.validation.generic_cms import handle_certvalidator_errors
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.authority import AuthorityWithCert
from pyhanko_certvalidator.path import ValidationPath
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

from extensions.validates import indications
from extensions.validates.names import subject_dn
from extensions.validates.times import gtime
from extensions.validates.policy import REVOCATION, SIGNER_KEY_USAGE, TSA_KEY_USAGE
from extensions.validates.request import Request
from extensions.validates.trust import BoundedTrust

USAGES = ("signature", "timestamp")
_STATUS = {
    AdESIndeterminate.REVOKED_NO_POE.standard_name: "revoked",
    AdESIndeterminate.REVOKED_CA_NO_POE.standard_name: "revoked",
    AdESIndeterminate.OUT_OF_BOUNDS_NO_POE.standard_name: "expired",
    AdESIndeterminate.OUT_OF_BOUNDS_NOT_REVOKED.standard_name: "expired",
}


@dataclass
class Supplied:
    """Revocation data the caller sent (``crls``, ``ocspResponses``): used like fetched data."""

    crls: list[crl.CertificateList] = field(default_factory=list)
    ocsps: list[ocsp.OCSPResponse] = field(default_factory=list)

    def covers(self, cert: x509.Certificate) -> bool:
        """A CRL of the certificate's issuer, or an OCSP response about its serial number, was sent."""
        return self.source_for(cert) is not None

    def source_for(self, cert: x509.Certificate) -> str | None:
        """``ocsp`` if an OCSP response about the certificate was sent, else ``crl`` if a CRL of its issuer."""
        if any(single["cert_id"]["serial_number"].native == cert.serial_number
               for response in self.ocsps
               for single in response.basic_ocsp_response["tbs_response_data"]["responses"]):
            return "ocsp"
        return "crl" if any(c["tbs_cert_list"]["issuer"] == cert.issuer for c in self.crls) else None


def revocation_policy(supplied: Supplied, leaf: x509.Certificate, others: list[x509.Certificate]
                      ) -> RevocationCheckingPolicy:
    """Check what declares a source (:data:`REVOCATION`), and also what the caller sent data for.

    A certificate that names no OCSP responder or CRL is not checked by default (there is
    nowhere to ask); when the caller sends revocation data for it, that data counts: the
    end-entity certificate is then checked (a revoked one is ``REVOKED_NO_POE``), and so are
    the CAs when the caller sent data for each CA certificate it sent.
    """
    required = RevocationCheckingRule.CRL_OR_OCSP_REQUIRED
    cas = [c for c in others if c.self_signed == "no"]
    ee_rule = required if supplied.covers(leaf) else REVOCATION.ee_certificate_rule
    ca_rule = required if cas and all(supplied.covers(c) for c in cas) else REVOCATION.intermediate_ca_cert_rule
    return RevocationCheckingPolicy(ee_certificate_rule=ee_rule, intermediate_ca_cert_rule=ca_rule)


@dataclass
class CertResult:
    indication: indications.Indication
    status: str
    chain: list[str] = field(default_factory=list)
    trust_anchor: str | None = None
    revocation: dict[str, Any] | None = None
    validation_info: dict[str, list[str]] = field(default_factory=dict)

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"indication": self.indication.indication, "status": self.status,
                               "chain": self.chain, "validationInfo": self.validation_info}
        if self.indication.sub_indication:
            out["subIndication"] = self.indication.sub_indication
        if self.trust_anchor:
            out["trustAnchor"] = self.trust_anchor
        if self.revocation:
            out["revocation"] = self.revocation
        return out


def validation_info(req: Request, extra_certs: list[x509.Certificate]) -> dict[str, list[str]]:
    """The OCSP responses, CRLs and certificates this answer rests on (Base64 DER)."""
    def b64(values: Any) -> list[str]:
        return [base64.b64encode(v.dump()).decode("ascii") for v in values]

    seen: dict[bytes, x509.Certificate] = {c.sha256: c for c in extra_certs}
    return {"ocsp": b64(req.log.ocsp.values()), "crl": b64(c for crls in req.log.crls.values() for c in crls),
            "certificates": b64(seen.values())}


def _chain_view(path: ValidationPath) -> tuple[list[str], str | None]:
    certs = list(path.iter_certs(include_root=True))
    anchor = path.trust_anchor
    authority = anchor.authority  # a named key (no certificate) has no root certificate to name
    root = subject_dn(authority.certificate) if isinstance(authority, AuthorityWithCert) else None
    return [subject_dn(c) for c in reversed(certs)], root


def _revoked_cert(req: Request, leaf: x509.Certificate, revo: Any, path: ValidationPath | None
                  ) -> x509.Certificate:
    """The certificate a revocation is about: the leaf, or for a revoked CA (``REVOKED_CA_NO_POE``)
    the lowest CA of the path with revocation data in this request. certvalidator checks the
    path from the anchor down and stops at the first revoked certificate, so nothing below that
    CA was checked; its revocation ``source`` is where the CA's status came from."""
    if revo is None or not revo.ca_revoked or path is None:
        return leaf
    cas = [c for c in path.iter_certs(include_root=False) if c.sha256 != leaf.sha256]
    return next((c for c in reversed(cas) if req.log.source_for(c)), leaf)


def _revocation(req: Request, supplied: Supplied, leaf: x509.Certificate, revo: Any,
                path: ValidationPath | None = None) -> dict[str, Any] | None:
    about = _revoked_cert(req, leaf, revo, path)
    source = req.log.source_for(about) or supplied.source_for(about)
    if revo is None:
        return {"source": source} if source else None
    reason = revo.revocation_reason.native if revo.revocation_reason is not None else None
    return {"time": gtime(revo.revocation_date), "reason": reason, "source": source}


async def validate_cert(req: Request, leaf: x509.Certificate, others: list[x509.Certificate], usage: str,
                        supplied: Supplied | None = None) -> CertResult:
    tsa = usage == "timestamp"
    anchors = req.settings.tsa_anchors if tsa else req.settings.trust_anchors
    supplied = supplied or Supplied()
    req.log.carried_ocsps += supplied.ocsps
    context = ValidationContext(
        trust_manager=BoundedTrust(anchors), other_certs=others, moment=req.moment,
        crls=supplied.crls, ocsps=supplied.ocsps,
        revinfo_policy=CertRevTrustPolicy(revocation_policy(supplied, leaf, others),
                                          retroactive_revinfo=req.moment is not None),
        allow_fetching=True, fetchers=req.fetchers(),
    )
    validator = CertificateValidator(leaf, intermediate_certs=others, validation_context=context)

    async def run() -> ValidationPath:
        path = await validator.async_validate_path()
        (TSA_KEY_USAGE if tsa else SIGNER_KEY_USAGE).validate(leaf)
        return path

    outcome = await handle_certvalidator_errors(leaf, run())
    path = outcome.success_result or outcome.error_path
    chain, anchor = _chain_view(path) if path is not None else ([subject_dn(leaf)], None)
    info = validation_info(req, [leaf, *others])
    if outcome.success_result is not None:
        return CertResult(indications.PASSED, "valid", chain, anchor, _revocation(req, supplied, leaf, None), info)
    subindic = outcome.error_subindic or AdESIndeterminate.GENERIC
    result = indications.from_ades(subindic, fetch_failed=req.fetch_failed)
    status = _STATUS.get(result.sub_indication or "", "unknown")
    revo = outcome.revo_details
    if status == "revoked" and revo is not None and revo.revocation_reason.native == "certificate_hold":
        status = "suspended"
    return CertResult(result, status, chain, anchor, _revocation(req, supplied, leaf, revo, path), info)
