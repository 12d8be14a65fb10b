"""One validation request: its settings, fetch log and time, and what pyHanko gets from it.

The request carries what every signature of one ``validates/*`` call shares: the settings,
the process-wide revocation cache, the HTTP session of its validation thread, the
``validationTime``, the log of what was fetched (and what failed), and the difference analysis
of its PDF. Whatever pyHanko fetches goes through rssp's own fetchers (:mod:`.fetchers`: the
operator's fetch policy and the request's budget; OCSP and CRLs through the process-wide
cache), recorded in the request's :class:`~extensions.validates.revocation.FetchLog`; pyHanko
never gets a fetcher backend of its own. What "valid" means is :mod:`.policy`'s.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime

from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

from extensions.validates import indications
from extensions.validates.fetchers import FETCH_ERRORS, policy_fetchers
from extensions.validates.outbound import Outbound
from extensions.validates.pdfhistory import ReviewOnce
from extensions.validates.revocation import FetchLog, RevocationCache
from extensions.validates.settings import ValidationSettings

log = logging.getLogger("extensions.validates")


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
