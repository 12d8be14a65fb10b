"""``returnReport=etsi`` for XAdES: the TS 119 102-2 ``SignatureValidationReport`` of one XML signature.

pyHanko's report generator reads PDF signatures only; :mod:`.report` builds the CMS one itself.
This is the XML counterpart: the signature identified by its ``Id``, its ``ds:SignatureValue`` and
the digest of its canonical ``ds:SignedInfo``; the validation time (the best signature time: the
earliest trusted time-stamp, else the validation time); the signer's certificate as a validation
object reference; the process (Basic, LTVM for validation with time, LTA with an archive
time-stamp). :mod:`.report` puts the service's own indication in the status, as for every format.
"""

from __future__ import annotations

import hashlib
from datetime import UTC, datetime
from typing import Any

from pyhanko.generated.etsi import ts_11910202
from pyhanko.generated.w3c import xmldsig_core
from pyhanko.sign.validation.ades import derive_validation_object_identifier
from pyhanko_certvalidator.ltv.poe import ValidationObject, ValidationObjectType
from xsdata.models.datatype import XmlDateTime

from extensions.validates.report import _digest
from extensions.validates.xades_core import Core


class XadesReportSource:
    """What the ETSI report needs of a validated XML signature (:func:`.report._single` calls it)."""

    def __init__(self, core: Core) -> None:
        self.core = core

    def etsi_report(self, result: Any) -> ts_11910202.SignatureValidationReportType:
        core = self.core
        status = result.api_status if result is not None else None
        moment = (status.validation_time if status is not None and status.validation_time else None) or \
            datetime.now(UTC)
        signer = None
        if core.signer is not None:
            vo = ValidationObject(object_type=ValidationObjectType.CERTIFICATE, value=core.signer)
            signer = ts_11910202.SignerInformationType(signer_certificate=ts_11910202.VOReferenceType(
                voreference=(f"{derive_validation_object_identifier(vo)}",)))
        process = result.process if result is not None else "Basic"
        return ts_11910202.SignatureValidationReportType(
            signature_identifier=ts_11910202.SignatureIdentifierType(
                id=core.signature.get("Id"),
                signature_value=xmldsig_core.SignatureValue(core.value),
                digest_alg_and_value=_digest(core.digest, hashlib.new(core.digest, core.signed_info_c14n).digest()),
                hash_only=False, doc_hash_only=False),
            validation_time_info=ts_11910202.ValidationTimeInfoType(validation_time=XmlDateTime.from_datetime(moment)),
            signer_information=signer,
            signature_validation_process=ts_11910202.SignatureValidationProcessType(
                signature_validation_process_id=f"urn:etsi:019102:validationprocess:{process}"),
            signature_validation_status=ts_11910202.ValidationStatusType(main_indication="", sub_indication=()),
        )
