"""The validation policy of this RSSP, as pyHanko and pyhanko-certvalidator objects.

One place decides what "valid" means here: the configured anchors (signers and TSAs apart),
revocation checked for every certificate that declares a source (OCSP or CRL, hard-fail:
a declared source that cannot be reached makes the answer ``TRY_LATER``, never a silent
pass), pyHanko's algorithm policy (weak hashes refused), and the key usages a signer needs;
path building is bounded (:mod:`.trust`). Each spec is built for one
:class:`~extensions.validates.request.Request`, whose fetchers are the only ones pyHanko gets.
"""

from __future__ import annotations

from pyhanko.sign.validation.policy_decl import (
    LocalKnowledge,
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

from extensions.validates import algorithms  # noqa: F401 - teaches asn1crypto the algorithms real files use
from extensions.validates.request import Request
from extensions.validates.trust import BoundedTrust

SIGNER_KEY_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)
TSA_KEY_USAGE = KeyUsageConstraints(extd_key_usage={"time_stamping"})
REVOCATION = RevocationCheckingPolicy(ee_certificate_rule=RevocationCheckingRule.CHECK_IF_DECLARED,
                                      intermediate_ca_cert_rule=RevocationCheckingRule.CHECK_IF_DECLARED)


def tsa_context(req: Request, known: LocalKnowledge) -> ValidationContext:
    """For a document or archive time-stamp: the TSA anchors, at ``validationTime``, with the
    validation data the document carries (a DSS, the CMS's certificates and revocation data)."""
    return ValidationContext(
        trust_manager=BoundedTrust(req.settings.tsa_anchors), moment=req.moment,
        revinfo_policy=CertRevTrustPolicy(REVOCATION, retroactive_revinfo=True),
        other_certs=list(known.known_certs), crls=[c.crl_data for c in known.known_crls],
        ocsps=[o.ocsp_response_data for o in known.known_ocsps], allow_fetching=True, fetchers=req.fetchers())


def cert_policy(req: Request, *, tsa: bool = False) -> CertValidationPolicySpec:
    anchors = req.settings.tsa_anchors if tsa else req.settings.trust_anchors
    return CertValidationPolicySpec(
        trust_manager=BoundedTrust(anchors),
        revinfo_policy=CertRevTrustPolicy(REVOCATION, retroactive_revinfo=req.moment is not None),
    )


def signature_spec(req: Request) -> SignatureValidationSpec:
    return SignatureValidationSpec(
        cert_validation_policy=cert_policy(req),
        ts_cert_validation_policy=cert_policy(req, tsa=True),
        revinfo_gathering_policy=RevocationInfoGatheringSpec(
            online_fetching_rule=RevinfoOnlineFetchingRule.ALWAYS_FETCH, fetcher_backend=req.backend()),
        key_usage_settings=SIGNER_KEY_USAGE,
    )


def pdf_spec(req: Request) -> PdfSignatureValidationSpec:
    return PdfSignatureValidationSpec(signature_validation_spec=signature_spec(req), diff_policy=req.diff_policy)
