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

from dataclasses import dataclass
from datetime import UTC, datetime

from pyhanko.sign.validation.policy_decl import (
    PdfSignatureValidationSpec,
    RevinfoOnlineFetchingRule,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko.sign.validation.settings import KeyUsageConstraints
from pyhanko_certvalidator.context import CertValidationPolicySpec
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo
from pyhanko_certvalidator.policy_decl import CertRevTrustPolicy, RevocationCheckingPolicy, RevocationCheckingRule

from extensions.validates.fetchers import policy_fetchers
from extensions.validates.outbound import Outbound
from extensions.validates.revocation import FetchLog, RevocationCache
from extensions.validates.settings import ValidationSettings
from extensions.validates.trust import BoundedTrust

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

    @property
    def timing(self) -> ValidationTimingInfo:
        if self.moment is None:
            return ValidationTimingInfo.now(UTC)
        return ValidationTimingInfo(validation_time=self.moment, best_signature_time=self.moment,
                                    point_in_time_validation=True)

    @property
    def fetch_failed(self) -> bool:
        return bool(self.log.failures)

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
        return PdfSignatureValidationSpec(signature_validation_spec=self.signature_spec())
