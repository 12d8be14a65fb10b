"""``returnReport=etsi``: an ETSI TS 119 102-2 validation report (XML).

pyHanko 0.38 has a TS 119 102-2 generator (``pyhanko.sign.validation.report.tools``,
marked incubating) for one PDF signature; its per-signature builder and its
validation-object packaging are used as they are for PAdES, so several signatures of one
document share one report. pyHanko has no CAdES variant, so :func:`_cades_report` builds
the same elements from the SignedData (the PDF-only attributes — byte range, sub-filter —
left out). The status element always carries this service's indication (including the
``TRY_LATER`` refinement), so the report and the JSON answer never disagree.
"""

from __future__ import annotations

import dataclasses
import hashlib
from typing import Any

from asn1crypto import cms
from pyhanko.generated.etsi import ts_11910202, xades
from pyhanko.generated.w3c import xmldsig_core
from pyhanko.sign.validation.ades import (
    AdESLTAValidationResult,
    AdESWithTimeValidationResult,
    derive_validation_object_identifier,
)
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature
from pyhanko.sign.validation.report.tools import (
    NAMESPACES,
    _digest_algo_uri,
    _generate_report,
    _package_validation_object,
)
from pyhanko_certvalidator.ltv.poe import ValidationObject, ValidationObjectType
from xsdata.formats.dataclass.serializers import XmlSerializer
from xsdata.formats.dataclass.serializers.config import SerializerConfig
from xsdata.models.datatype import XmlDateTime

from extensions.validates.outcome import SignatureOutcome

_MAIN = {"TOTAL_PASSED": "total-passed", "TOTAL_FAILED": "total-failed", "INDETERMINATE": "indeterminate"}


def _status(outcome: SignatureOutcome) -> ts_11910202.ValidationStatusType:
    sub = outcome.indication.sub_indication
    return ts_11910202.ValidationStatusType(
        main_indication=f"urn:etsi:019102:mainindication:{_MAIN[outcome.indication.indication]}",
        sub_indication=(f"urn:etsi:019102:subindication:{sub}",) if sub else ())


def _process(result: Any) -> str:
    if isinstance(result, AdESLTAValidationResult):
        return "LTA"
    return "LTVM" if isinstance(result, AdESWithTimeValidationResult) else "Basic"


def _digest(algo: str, value: bytes) -> xades.DigestAlgAndValueType:
    return xades.DigestAlgAndValueType(digest_method=xmldsig_core.DigestMethod(_digest_algo_uri(algo)),
                                       digest_value=xmldsig_core.DigestValue(value))


def _cades_report(signed: cms.SignedData, raw_digest: bytes | None, result: Any
                  ) -> ts_11910202.SignatureValidationReportType:
    status = result.api_status
    signer_info = signed["signer_infos"][0]
    md = status.md_algorithm
    attrs = signer_info["signed_attrs"]
    tbs = attrs.dump() if attrs else b""
    if raw_digest is None:
        content = signed["encap_content_info"]["content"]
        raw_digest = hashlib.new(md, bytes(content) if content is not None else b"").digest()
    best = None
    if isinstance(result, AdESWithTimeValidationResult):
        best = ts_11910202.POEType(poetime=XmlDateTime.from_datetime(result.best_signature_time),
                                   type_of_proof="urn:etsi:019102:poetype:validation")
    signer_vo = ValidationObject(object_type=ValidationObjectType.CERTIFICATE, value=status.signing_cert)
    return ts_11910202.SignatureValidationReportType(
        signature_identifier=ts_11910202.SignatureIdentifierType(
            signature_value=xmldsig_core.SignatureValue(signer_info["signature"].native),
            digest_alg_and_value=_digest(md, hashlib.new(md, tbs).digest()), hash_only=False, doc_hash_only=False),
        validation_time_info=ts_11910202.ValidationTimeInfoType(
            validation_time=XmlDateTime.from_datetime(status.validation_time), best_signature_time=best),
        signers_document=ts_11910202.SignersDocumentType(digest_alg_and_value=_digest(md, raw_digest)),
        signer_information=ts_11910202.SignerInformationType(signer_certificate=ts_11910202.VOReferenceType(
            voreference=(f"{derive_validation_object_identifier(signer_vo)}",))),
        signature_validation_process=ts_11910202.SignatureValidationProcessType(
            signature_validation_process_id=f"urn:etsi:019102:validationprocess:{_process(result)}"),
        signature_validation_status=ts_11910202.ValidationStatusType(main_indication="", sub_indication=()),
    )


def etsi_report(outcomes: list[SignatureOutcome]) -> bytes:
    """One TS 119 102-2 ValidationReport for every signature of the document (UTF-8 XML)."""
    reports = []
    objects: dict[str, Any] = {}
    for outcome in outcomes:
        if outcome.result is None or outcome.result.api_status is None:
            continue
        source = outcome.report_source
        if isinstance(source, EmbeddedPdfSignature):
            single = _generate_report(source, outcome.result)
        else:
            single = _cades_report(*source, outcome.result)
        reports.append(dataclasses.replace(single, signature_validation_status=_status(outcome)))
        for vo in outcome.result.validation_objects:
            objects.setdefault(derive_validation_object_identifier(vo) or str(len(objects)), vo)
    report = ts_11910202.ValidationReport(
        signature_validation_report=tuple(reports),
        signature_validation_objects=ts_11910202.ValidationObjectListType(
            tuple(_package_validation_object(vo) for vo in objects.values())))
    xml = XmlSerializer(config=SerializerConfig(indent="  ")).render(report, ns_map=NAMESPACES)
    return xml.encode("utf-8")
