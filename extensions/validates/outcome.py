"""One validated signature as the API reports it (DESIGN §3.2 ``signatures[]``).

pyHanko's AdES results (basic, with-time, LTA) and their status objects are read here and
nowhere else, so PAdES and CAdES answers have the same shape and the same indications.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, overload

from asn1crypto import x509
from pyhanko.sign.ades.report import AdESFailure
from pyhanko.sign.validation.ades import AdESBasicValidationResult, AdESWithTimeValidationResult
from pyhanko.sign.validation.status import TimestampSignatureStatus

from extensions.validates import indications
from extensions.validates.names import signer_view, subject_dn
from extensions.validates.times import gtime

B_B, B_T, B_LT, B_LTA = "B-B", "B-T", "B-LT", "B-LTA"
_CERT_STATUS = {"REVOKED_NO_POE": "revoked", "REVOKED_CA_NO_POE": "revoked", "OUT_OF_BOUNDS_NO_POE": "expired",
                "OUT_OF_BOUNDS_NOT_REVOKED": "expired"}


@dataclass
class Timestamp:
    type: str  # signature | document | archive
    gen_time: datetime | None
    tsa: str | None
    indication: str
    sub_indication: str | None = None

    def view(self) -> dict[str, Any]:
        out = {"type": self.type, "genTime": gtime(self.gen_time), "tsa": self.tsa, "indication": self.indication}
        if self.sub_indication:
            out["subIndication"] = self.sub_indication
        return out


@overload
def timestamp_of(kind: str, status: TimestampSignatureStatus) -> Timestamp: ...
@overload
def timestamp_of(kind: str, status: TimestampSignatureStatus | None) -> Timestamp | None: ...


def timestamp_of(kind: str, status: TimestampSignatureStatus | None) -> Timestamp | None:
    """The report entry for a time-stamp's status; None only for no time-stamp at all."""
    if status is None:
        return None
    tsa = subject_dn(status.signing_cert) if status.signing_cert else None
    if not status.intact:
        return Timestamp(kind, status.timestamp, tsa, indications.TOTAL_FAILED, AdESFailure.HASH_FAILURE.standard_name)
    if not status.valid:
        return Timestamp(kind, status.timestamp, tsa, indications.TOTAL_FAILED,
                         AdESFailure.SIG_CRYPTO_FAILURE.standard_name)
    if not status.trusted:
        problem = getattr(status, "trust_problem_indic", None)
        return Timestamp(kind, status.timestamp, tsa, indications.INDETERMINATE,
                         problem.standard_name if problem is not None else None)
    return Timestamp(kind, status.timestamp, tsa, indications.TOTAL_PASSED)


@dataclass
class SignatureOutcome:
    signature_id: str
    format: str
    level: str
    indication: indications.Indication
    result: AdESBasicValidationResult | None = None
    timestamps: list[Timestamp] = field(default_factory=list)
    report_source: Any = None  # what the ETSI report needs (the embedded PDF signature, or the SignedData)
    signing_time: datetime | None = None  # claimed by the signer (PDF /M, or the signingTime attribute)
    notes: list[str] = field(default_factory=list)  # what could not be checked, in fixed words
    signer_cert: x509.Certificate | None = None  # the signer, when there is no pyHanko result (counter-signatures)

    @property
    def cert_status(self) -> str:
        if self.indication.passed:
            return "valid"
        return _CERT_STATUS.get(self.indication.sub_indication or "", "unknown")

    def view(self) -> dict[str, Any]:
        out: dict[str, Any] = {"signatureID": self.signature_id, "indication": self.indication.indication,
                               "format": self.format, "level": self.level, "certStatus": self.cert_status,
                               "timestamps": [t.view() for t in self.timestamps]}
        if self.indication.sub_indication:
            out["subIndication"] = self.indication.sub_indication
        if self.notes:
            out["notes"] = list(self.notes)
        status = self.result.api_status if self.result is not None else None
        if status is None and self.signer_cert is not None:
            out["signer"] = signer_view(self.signer_cert)
        if status is not None:
            if status.signing_cert is not None:
                out["signer"] = signer_view(status.signing_cert)
            reported = self.signing_time or getattr(status, "signer_reported_dt", None)
            if reported is not None:
                out["signingTime"] = gtime(reported)
        if isinstance(self.result, AdESWithTimeValidationResult):
            out["bestSignatureTime"] = gtime(self.result.best_signature_time)
        elif status is not None and getattr(status, "validation_time", None) is not None:
            out["bestSignatureTime"] = gtime(status.validation_time)
        return out
