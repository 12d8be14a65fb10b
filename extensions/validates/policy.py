"""The validation policy of this RSSP, as pyHanko and pyhanko-certvalidator objects.

One place decides what "valid" means here: the configured anchors (signers and TSAs apart),
revocation checked for every certificate that declares a source (OCSP or CRL, hard-fail:
a declared source that cannot be reached makes the answer ``TRY_LATER``, never a silent
pass), pyHanko's algorithm policy (weak hashes refused), and the key usages a signer needs;
path building is bounded (:mod:`.trust`).
Whatever is fetched goes through rssp's own fetchers (:mod:`.fetchers`: the operator's fetch
policy and the request's budget; OCSP and CRLs through the process-wide cache), recorded in
the request's :class:`~extensions.validates.revocation.FetchLog`; pyHanko never gets a
fetcher backend of its own.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
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
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

from extensions.validates import (
    algorithms,  # noqa: F401 - teaches asn1crypto the algorithms real files use
    indications,
)
from extensions.validates.fetchers import FETCH_ERRORS, policy_fetchers
from extensions.validates.outbound import Outbound
from extensions.validates.pdfhistory import ReviewOnce
from extensions.validates.revocation import FetchLog, RevocationCache
from extensions.validates.settings import ValidationSettings
from extensions.validates.trust import BoundedTrust

log = logging.getLogger("extensions.validates")
SIGNER_KEY_USAGE = KeyUsageConstraints(key_usage={"digital_signature", "non_repudiation"}, match_all_key_usages=False)
TSA_KEY_USAGE = KeyUsageConstraints(extd_key_usage={"time_stamping"})
REVOCATION = RevocationCheckingPolicy(ee_certificate_rule=RevocationCheckingRule.CHECK_IF_DECLARED,
                                      intermediate_ca_cert_rule=RevocationCheckingRule.CHECK_IF_DECLARED)


class PolicyBackend(FetcherBackend):
    """Hands pyHanko one request's fetchers (policy, budget, cache)."""

    def __init__(self, request: Request) -> None:
        self.request = request

    def get_fetchers(self) -> Fetchers:
        return self.request.fetchers()

    async def close(self) -> None:  # the session and the cache outlive the request
        return None


@dataclass
class Request:
    """What one validation request needs: the settings, its fetch log, its time."""

    settings: ValidationSettings
    cache: RevocationCache
    net: Outbound  # the HTTP session of the validation thread this request runs on
    moment: datetime | None  # validationTime; None = now
    log: FetchLog
    # the difference analysis of this request's document, each pair of revisions judged once
    diff_policy: ReviewOnce = field(default_factory=ReviewOnce)

    @property
    def timing(self) -> ValidationTimingInfo:
        if self.moment is None:
            return ValidationTimingInfo.now(UTC)
        return ValidationTimingInfo(validation_time=self.moment, best_signature_time=self.moment,
                                    point_in_time_validation=True)

    @property
    def fetch_failed(self) -> bool:
        return bool(self.log.failures)

    def unreadable(self, exc: Exception) -> indications.Indication:
        """The answer for a signature whose processing raised: a fetch failure that escaped pyHanko
        is a want of revocation data (``TRY_LATER`` when a source did not answer); anything else
        means the signature cannot be read or uses what pyHanko cannot handle (``FORMAT_FAILURE``)."""
        log.info("validation: a signature could not be checked: %s", type(exc).__name__, exc_info=exc)
        if isinstance(exc, FETCH_ERRORS):
            return indications.from_ades(AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE,
                                         fetch_failed=self.fetch_failed)
        return indications.failed(AdESFailure.FORMAT_FAILURE)

    def tsa_context(self, known: LocalKnowledge) -> ValidationContext:
        """For a document or archive time-stamp: the TSA anchors, at ``validationTime``, with the
        validation data the document carries (a DSS, the CMS's certificates and revocation data)."""
        return ValidationContext(
            trust_manager=BoundedTrust(self.settings.tsa_anchors), moment=self.moment,
            revinfo_policy=CertRevTrustPolicy(REVOCATION, retroactive_revinfo=True),
            other_certs=list(known.known_certs), crls=[c.crl_data for c in known.known_crls],
            ocsps=[o.ocsp_response_data for o in known.known_ocsps], allow_fetching=True, fetchers=self.fetchers())

    def carry(self, knowledge: LocalKnowledge) -> None:
        """Validation data the document carries: what a failed or refused OCSP fetch falls back on."""
        known = {r.dump() for r in self.log.carried_ocsps}
        for container in knowledge.known_ocsps:
            if container.ocsp_response_data.dump() not in known:
                known.add(container.ocsp_response_data.dump())
                self.log.carried_ocsps.append(container.ocsp_response_data)

    def fetchers(self) -> Fetchers:
        return policy_fetchers(self.net, self.cache, self.log, self.settings.max_issuer_depth)

    def backend(self) -> PolicyBackend:
        return PolicyBackend(self)

    def cert_policy(self, *, tsa: bool = False) -> CertValidationPolicySpec:
        anchors = self.settings.tsa_anchors if tsa else self.settings.trust_anchors
        return CertValidationPolicySpec(
            trust_manager=BoundedTrust(anchors),
            revinfo_policy=CertRevTrustPolicy(REVOCATION, retroactive_revinfo=self.moment is not None),
        )

    def signature_spec(self) -> SignatureValidationSpec:
        return SignatureValidationSpec(
            cert_validation_policy=self.cert_policy(),
            ts_cert_validation_policy=self.cert_policy(tsa=True),
            revinfo_gathering_policy=RevocationInfoGatheringSpec(
                online_fetching_rule=RevinfoOnlineFetchingRule.ALWAYS_FETCH, fetcher_backend=self.backend()),
            key_usage_settings=SIGNER_KEY_USAGE,
        )

    def pdf_spec(self) -> PdfSignatureValidationSpec:
        return PdfSignatureValidationSpec(signature_validation_spec=self.signature_spec(), diff_policy=self.diff_policy)
