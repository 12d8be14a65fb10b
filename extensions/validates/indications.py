"""ETSI EN 319 102-1 indications: the vocabulary every answer of this service speaks.

pyHanko's AdES engine already reports the EN 319 102-1 sub-indications (its
``AdESPassed``/``AdESFailure``/``AdESIndeterminate`` enums carry the standard names); this
module turns them into the three main indications of the API, and adds the one refinement
pyHanko does not make: a path that failed only because no revocation data could be obtained
while a responder or CRL server was unreachable is ``INDETERMINATE``/``TRY_LATER``, not a
general chain failure, so the client knows that asking again later may succeed.

A revoked CA needs no mapping either: pyHanko's ``handle_certvalidator_errors`` turns
certvalidator's ``RevokedError`` into ``REVOKED_NO_POE`` for the end-entity certificate and
``REVOKED_CA_NO_POE`` for a CA of the path (EN 319 102-1 5.2.6), as the standard names them.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESStatus, AdESSubIndic

TOTAL_PASSED = "TOTAL_PASSED"
TOTAL_FAILED = "TOTAL_FAILED"
INDETERMINATE = "INDETERMINATE"

_MAIN = {AdESStatus.PASSED: TOTAL_PASSED, AdESStatus.FAILED: TOTAL_FAILED,
         AdESStatus.INDETERMINATE: INDETERMINATE}
_RETRYABLE = {AdESIndeterminate.CERTIFICATE_CHAIN_GENERAL_FAILURE, AdESIndeterminate.NO_POE,
              AdESIndeterminate.TRY_LATER}


@dataclass(frozen=True)
class Indication:
    indication: str
    sub_indication: str | None = None

    @property
    def passed(self) -> bool:
        return self.indication == TOTAL_PASSED


PASSED = Indication(TOTAL_PASSED)


def from_ades(subindic: AdESSubIndic, *, fetch_failed: bool = False) -> Indication:
    """pyHanko's AdES result as (indication, sub-indication)."""
    main = _MAIN[subindic.status]
    if main == TOTAL_PASSED:
        return PASSED
    if fetch_failed and subindic in _RETRYABLE:
        return Indication(INDETERMINATE, AdESIndeterminate.TRY_LATER.standard_name)
    return Indication(main, subindic.standard_name)


def failed(sub: AdESFailure) -> Indication:
    return Indication(TOTAL_FAILED, sub.standard_name)


def indeterminate(sub: AdESIndeterminate) -> Indication:
    return Indication(INDETERMINATE, sub.standard_name)


def overall(indications: Iterable[str]) -> str:
    """A document's indication: failed if any signature failed, passed only if all passed."""
    values = list(indications)
    if TOTAL_FAILED in values:
        return TOTAL_FAILED
    if values and all(v == TOTAL_PASSED for v in values):
        return TOTAL_PASSED
    return INDETERMINATE
