"""The EN 319 102-1 process for a signature with or without a signature time-stamp.

A signature with a signature time-stamp goes through the validation process for signatures
with time (5.5), one without through the basic process (5.3), as pyHanko implements them.
One rule of the standard pyHanko does not follow: a signature time-stamp that does not
verify (its message imprint is not this signature's, its token is broken, its TSA cannot be
trusted) is to be removed from the set of time-stamps and the signature validated without it
(EN 319 102-1 5.5.4, step 4), whereas pyHanko's process answers with the time-stamp's failure —
a valid signature carrying a copied or damaged time-stamp came back ``TOTAL_FAILED``. So when
the process with time answers worse than the basic process (a time-stamp can only add a proof
of existence, never take validity away), the basic answer stands and the notes say why.
"""

from __future__ import annotations

from typing import Any

from pyhanko.sign.ades.report import AdESStatus
from pyhanko.sign.validation.ades import ades_basic_validation, ades_with_time_validation
from pyhanko.sign.validation.policy_decl import SignatureValidationSpec
from pyhanko_certvalidator.ltv.types import ValidationTimingInfo

_RANK = {AdESStatus.FAILED: 0, AdESStatus.INDETERMINATE: 1, AdESStatus.PASSED: 2}
IGNORED_TIMESTAMP = "the signature time-stamp does not verify: ignored, the signature validated without it"


async def validate(signed_data: Any, spec: SignatureValidationSpec, timing: ValidationTimingInfo,
                   raw_digest: bytes | None, *, with_time: bool, notes: list[str],
                   **time_kwargs: Any) -> Any:
    """The process for this signature's form; ``time_kwargs`` go to the process with time only
    (a PDF signature's status class and integrity summary)."""
    if not with_time:
        return await ades_basic_validation(signed_data, spec, timing_info=timing, raw_digest=raw_digest)
    result = await ades_with_time_validation(signed_data, spec, timing_info=timing, raw_digest=raw_digest,
                                             **time_kwargs)
    if result.ades_subindic.status == AdESStatus.PASSED:
        return result
    fallback = await ades_basic_validation(signed_data, spec, timing_info=timing, raw_digest=raw_digest)
    if _RANK[fallback.ades_subindic.status] > _RANK[result.ades_subindic.status]:
        notes.append(IGNORED_TIMESTAMP)
        return fallback
    return result
