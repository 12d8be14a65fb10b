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


# XML digest method URIs pyHanko's table lacks (RFC 6931 §2.1.5 / W3C xmldsig-more, SHA-3 and SHAKE)
_MORE_URIS = {"sha3_224": "http://www.w3.org/2007/05/xmldsig-more#sha3-224",
              "sha3_256": "http://www.w3.org/2007/05/xmldsig-more#sha3-256",
              "sha3_384": "http://www.w3.org/2007/05/xmldsig-more#sha3-384",
              "sha3_512": "http://www.w3.org/2007/05/xmldsig-more#sha3-512",
              "shake256": "http://www.w3.org/2021/04/xmldsig-more#shake256",
              "sha1": "http://www.w3.org/2000/09/xmldsig#sha1"}


def digest_uri(algo: str) -> str:
    try:
        return _digest_algo_uri(algo)
    except (NotImplementedError, KeyError):
        return _MORE_URIS.get(algo, f"urn:oid:{algo}" if algo[:1].isdigit() else f"urn:rssp:digest:{algo}")


def _hash(algo: str, data: bytes) -> bytes:
    try:
        return hashlib.new(algo, data).digest() if algo != "shake256" else hashlib.shake_256(data).digest(64)
    except (ValueError, TypeError):
        return b""


def _digest(algo: str, value: bytes) -> xades.DigestAlgAndValueType:
    return xades.DigestAlgAndValueType(digest_method=xmldsig_core.DigestMethod(digest_uri(algo)),
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
        raw_digest = _hash(md, bytes(content) if content is not None else b"")
    best = None
    if isinstance(result, AdESWithTimeValidationResult):
        best = ts_11910202.POEType(poetime=XmlDateTime.from_datetime(result.best_signature_time),
                                   type_of_proof="urn:etsi:019102:poetype:validation")
    signer_vo = ValidationObject(object_type=ValidationObjectType.CERTIFICATE, value=status.signing_cert)
    return ts_11910202.SignatureValidationReportType(
        signature_identifier=ts_11910202.SignatureIdentifierType(
            signature_value=xmldsig_core.SignatureValue(signer_info["signature"].native),
            digest_alg_and_value=_digest(md, _hash(md, tbs)), hash_only=False, doc_hash_only=False),
        validation_time_info=ts_11910202.ValidationTimeInfoType(
            validation_time=XmlDateTime.from_datetime(status.validation_time), best_signature_time=best),
        signers_document=ts_11910202.SignersDocumentType(digest_alg_and_value=_digest(md, raw_digest)),
        signer_information=ts_11910202.SignerInformationType(signer_certificate=ts_11910202.VOReferenceType(
            voreference=(f"{derive_validation_object_identifier(signer_vo)}",))),
        signature_validation_process=ts_11910202.SignatureValidationProcessType(
            signature_validation_process_id=f"urn:etsi:019102:validationprocess:{_process(result)}"),
        signature_validation_status=ts_11910202.ValidationStatusType(main_indication="", sub_indication=()),
    )


def _unread(outcome: SignatureOutcome) -> ts_11910202.SignatureValidationReportType:
    """A signature that could not be read or validated: its identifier and status only."""
    return ts_11910202.SignatureValidationReportType(
        signature_identifier=ts_11910202.SignatureIdentifierType(id=outcome.signature_id, hash_only=False,
                                                                 doc_hash_only=False),
        signature_validation_status=_status(outcome))


def _single(outcome: SignatureOutcome) -> ts_11910202.SignatureValidationReportType:
    """pyHanko's report for a PDF signature; rssp's for CMS and wherever pyHanko's generator gives up
    (it refuses e.g. SHA-3 digests, a missing message-digest, multi-valued attributes)."""
    result, source = outcome.result, outcome.report_source
    if hasattr(source, "etsi_report"):  # XAdES (extensions/validates/xades_report.py)
        try:
            return source.etsi_report(result)  # type: ignore[no-any-return]
        except Exception:  # noqa: BLE001 - the report never fails where the JSON answer succeeds
            return _unread(outcome)
    if result is None or result.api_status is None or source is None:
        return _unread(outcome)
    if isinstance(source, EmbeddedPdfSignature):
        try:
            return _generate_report(source, result)
        except Exception:  # noqa: BLE001 - the generator is "incubating": fall back to rssp's elements
            signed, raw_digest = source.signed_data, source.compute_digest()
    else:
        signed, raw_digest = source  # CMS (extensions/validates/cades.py): the SignedData and its digest, if given
    try:
        return _cades_report(signed, raw_digest, result)
    except Exception:  # noqa: BLE001 - the report never fails where the JSON answer succeeds
        return _unread(outcome)


def _packaged(vo: Any) -> Any:
    try:
        return _package_validation_object(vo)
    except Exception:  # noqa: BLE001 - an object pyHanko cannot describe is left out, not the report
        return None


def etsi_report(outcomes: list[SignatureOutcome]) -> bytes:
    """One TS 119 102-2 ValidationReport for every signature of the document (UTF-8 XML)."""
    reports = []
    objects: dict[str, Any] = {}
    for outcome in outcomes:
        reports.append(dataclasses.replace(_single(outcome), signature_validation_status=_status(outcome)))
        for vo in outcome.result.validation_objects if outcome.result is not None else ():
            objects.setdefault(derive_validation_object_identifier(vo) or str(len(objects)), vo)
    report = ts_11910202.ValidationReport(
        signature_validation_report=tuple(reports),
        signature_validation_objects=ts_11910202.ValidationObjectListType(
            tuple(p for p in (_packaged(vo) for vo in objects.values()) if p is not None)))
    xml = XmlSerializer(config=SerializerConfig(indent="  ")).render(report, ns_map=NAMESPACES)
    return xml.encode("utf-8")
