"""PAdES: every signature and document timestamp of a PDF, incremental updates included.

Each signature goes through the EN 319 102-1 process its form calls for, as pyHanko
implements them: with document timestamps after it, the validation process for long-term
availability (``ades_lta_validation``: the document timestamps are the evidence record);
with only a signature timestamp, the process for signatures with time
(``ades_with_time_validation``: the timestamp is the proof of existence, so a signer revoked
*after* it still passes and one revoked before does not), with the DSS and the
revocation-info attribute as local knowledge; with neither, the basic process. pyHanko's
difference analysis judges the incremental updates after each signature (only
modifications its default policy allows: form filling, annotations, DSS and timestamps).

The level is read from the file's structure: B-T when a signature timestamp or a later
document timestamp exists, B-LT when a DSS with revocation data follows the signature, B-LTA
when a document timestamp covers that DSS.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.ades.report import AdESFailure, AdESIndeterminate, AdESStatus
from pyhanko.sign.fields import enumerate_sig_fields
from pyhanko.sign.validation.ades import (
    _adobe_revinfo_archival_to_local_knowledge,
    _dss_to_local_knowledge,
    ades_lta_validation,
)
from pyhanko.sign.validation.pdf_embedded import EmbeddedPdfSignature, async_validate_pdf_timestamp
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko.sign.validation.status import PdfSignatureStatus

from extensions.validates import indications, processes
from extensions.validates.errors import BadDocument
from extensions.validates.fetchers import FETCH_ERRORS
from extensions.validates.outcome import B_B, B_LT, B_LTA, B_T, SignatureOutcome, Timestamp, timestamp_of
from extensions.validates.pdfhistory import index_history
from extensions.validates.policy import pdf_spec, signature_spec, tsa_context
from extensions.validates.request import Request
from extensions.validates.settings import ValidationSettings


@dataclass
class Signatures:
    """A PDF's signature fields: readable ones in signing order, and the names of unreadable ones."""

    reader: PdfFileReader
    regular: list[EmbeddedPdfSignature]
    doc_ts: list[EmbeddedPdfSignature]
    broken: list[str]


def _bounded(count: int, limit: int, what: str) -> None:
    """The work per document grows with revisions times signatures: refuse past the operator's caps."""
    if count > limit:
        raise BadDocument(f"the PDF has {count} {what}; this service validates at most {limit}")


def open_pdf(data: bytes, settings: ValidationSettings) -> Signatures:
    """Parse the PDF and each signature field on its own (pyHanko's collector stops at the first bad one).

    A file that is not a readable PDF is a bad request; a readable PDF with a signature whose
    CMS is garbage is a validation outcome for that signature (``FORMAT_FAILURE``). Reading
    the cross-reference sections is linear in the file; the revisions are counted before any
    other work (and their history indexed: :mod:`.pdfhistory`), the signature fields before
    any of them is examined.
    """
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        revisions = reader.xrefs.total_revisions
    except Exception as exc:  # noqa: BLE001 - untrusted input: any parse failure is a bad document
        raise BadDocument(f"not a readable PDF: {type(exc).__name__}") from None
    _bounded(revisions, settings.max_pdf_revisions, "revisions (incremental updates)")
    index_history(reader)
    try:
        fields = list(enumerate_sig_fields(reader, filled_status=True))
    except Exception as exc:  # noqa: BLE001 - untrusted input: any parse failure is a bad document
        raise BadDocument(f"not a readable PDF: {type(exc).__name__}") from None
    _bounded(len(fields), settings.max_pdf_signatures, "signature fields")
    good, broken = [], []
    for fq_name, _sig_obj, field in fields:
        try:
            good.append(EmbeddedPdfSignature(reader, field, fq_name))
        except Exception:  # noqa: BLE001 - one unreadable signature does not hide the others
            broken.append(fq_name)
    good.sort(key=lambda sig: sig.signed_revision)
    stamps = [s for s in good if is_timestamp(s)]
    for stamp in stamps:
        stamp.__class__ = DocumentTimestamp
    return Signatures(reader, [s for s in good if not is_timestamp(s)], stamps, broken)


NO_PAST_NEEDED = ("the long-term process found no proof of existence in the past (a certificate of the path names "
                  "no revocation source); the signature is valid at the validation time without one")


class DocumentTimestamp(EmbeddedPdfSignature):
    """An RFC 3161 time-stamp token in a signature field, whatever the field's ``/Type`` says.

    Some producers put the document time-stamp in a ``/Sig`` dictionary (subfilter
    ``ETSI.RFC3161``); pyHanko validates time-stamps only under ``/DocTimeStamp``."""

    @property
    def sig_object_type(self) -> generic.NameObject:
        return generic.NameObject("/DocTimeStamp")


def is_timestamp(sig: EmbeddedPdfSignature) -> bool:
    """A document time-stamp: by its type, its subfilter, or what the CMS encapsulates (a TSTInfo)."""
    if sig.sig_object_type == "/DocTimeStamp" or sig.sig_object.get("/SubFilter") == "/ETSI.RFC3161":
        return True
    return sig.signed_data["encap_content_info"]["content_type"].native == "tst_info"


def dss_revision(reader: PdfFileReader) -> int | None:
    """The first revision whose catalog has a DSS (validation data added after signing).

    A revision whose catalog cannot be read (hybrid or odd cross-reference sections of real
    files) is skipped: the level is read from the revisions that can be, and the signatures
    are validated all the same.
    """
    for revision in range(reader.xrefs.total_revisions):
        try:
            dss = reader.get_historical_root(revision).get("/DSS")
            dss = dss.get_object() if dss is not None else None
            if dss is not None and ("/OCSPs" in dss or "/CRLs" in dss):
                return revision
        except Exception:  # noqa: BLE001, S112 - untrusted input: an unreadable revision has no DSS we can use
            continue
    return None


def has_signature_timestamp(sig: EmbeddedPdfSignature) -> bool:
    unsigned = sig.signer_info["unsigned_attrs"]
    return bool(unsigned) and any(a["type"].native == "signature_time_stamp_token" for a in unsigned)


def _level_or_bb(sig: EmbeddedPdfSignature, doc_ts: list[EmbeddedPdfSignature], dss_rev: int | None) -> str:
    try:
        return level_of(sig, doc_ts, dss_rev)
    except Exception:  # noqa: BLE001 - an unreadable signature claims no level
        return B_B


def level_of(sig: EmbeddedPdfSignature, doc_ts: list[EmbeddedPdfSignature], dss_rev: int | None) -> str:
    has_sig_ts = has_signature_timestamp(sig)
    later = [ts for ts in doc_ts if ts.signed_revision > sig.signed_revision]
    if not (has_sig_ts or later):
        return B_B
    if dss_rev is None or dss_rev <= sig.signed_revision:
        return B_T
    if any(ts.signed_revision >= dss_rev for ts in later):
        return B_LTA
    return B_LT


async def _doc_timestamp(req: Request, ts: EmbeddedPdfSignature, dss_rev: int | None) -> Timestamp:
    context = tsa_context(req, _known_safely(ts))
    kind = "archive" if dss_rev is not None and ts.signed_revision >= dss_rev else "document"
    try:
        status = await async_validate_pdf_timestamp(ts, validation_context=context, diff_policy=req.diff_policy)
    except Exception:  # noqa: BLE001 - a broken timestamp is reported, not fatal
        return Timestamp(kind, None, None, indications.TOTAL_FAILED)
    return timestamp_of(kind, status)


def _known(sig: EmbeddedPdfSignature) -> LocalKnowledge:
    """Validation data the file carries: the DSS and the signature's revocation-info attribute.

    pyHanko's LTA process reads them with these two helpers; they are private, which is why
    pyproject pins pyHanko to 0.38.x.
    """
    dss, attr = _dss_to_local_knowledge(reader=sig.reader), _adobe_revinfo_archival_to_local_knowledge(sig)
    return LocalKnowledge(known_ocsps=dss.known_ocsps + attr.known_ocsps, known_crls=dss.known_crls + attr.known_crls,
                          known_certs=dss.known_certs)


def _known_safely(sig: EmbeddedPdfSignature) -> LocalKnowledge:
    try:
        return _known(sig)
    except Exception:  # noqa: BLE001 - unreadable embedded data is ignored: validation fetches or says so
        return LocalKnowledge()


async def _long_term(req: Request, sig: EmbeddedPdfSignature, notes: list[str]) -> Any:
    """pyHanko's process for long-term availability, or None when it cannot run to its end.

    It lets a failed fetch escape from its proof-of-existence analysis of the document
    time-stamps; the signature is then validated with time (the revocation data the file
    carries, the fetch failure reported as ``TRY_LATER``), and the answer says so, rather than
    calling the document unreadable.
    """
    try:
        return await ades_lta_validation(sig, pdf_spec(req), timing_info=req.timing)
    except FETCH_ERRORS:
        notes.append("long-term validation needs revocation data that could not be fetched: "
                     "validated with time instead")
    except (ValueError, KeyError, TypeError, AttributeError, NotImplementedError):  # unreadable history
        notes.append("the document time-stamps after this signature could not be analysed: "
                     "validated with time instead")
    return None


async def _ades(req: Request, sig: EmbeddedPdfSignature, archived: bool, notes: list[str]) -> Any:
    """The EN 319 102-1 process for this signature's form (see the module docstring).

    pyHanko's long-term process also runs the past signature validation when the signature
    passes at the validation time, and its time-slide needs revocation data for every
    certificate of the path: a certificate that names no revocation source (a local CA's)
    makes it ``NO_POE``, although nothing in the past is needed. Such a signature is
    validated with time; if that passes, it passes (and the notes say so).
    """
    lta = await _long_term(req, sig, notes) if archived else None
    if lta is not None and lta.ades_subindic != AdESIndeterminate.NO_POE:
        return lta
    spec = dataclasses.replace(signature_spec(req), local_knowledge=_known(sig))
    now = await processes.validate(sig.signed_data, spec, req.timing, sig.compute_digest(),
                                   with_time=has_signature_timestamp(sig), notes=notes,
                                   status_cls=PdfSignatureStatus, extra_status_kwargs=sig.summarise_integrity_info())
    if lta is None:
        return now
    if now.ades_subindic.status != AdESStatus.PASSED:
        return lta
    notes.append(NO_PAST_NEEDED)
    return now


async def _signature(req: Request, sig: EmbeddedPdfSignature, index: int, doc_stamps: list[Timestamp],
                     doc_ts: list[EmbeddedPdfSignature], dss_rev: int | None) -> SignatureOutcome:
    archived = any(ts.signed_revision > sig.signed_revision for ts in doc_ts)
    name = sig.field_name or f"signature-{index + 1}"
    notes: list[str] = []
    try:
        notes += review_updates(req, sig)
        integrity = sig.summarise_integrity_info()
        result = await _ades(req, sig, archived, notes)
    except Exception as exc:  # noqa: BLE001 - this signature cannot be read or checked; the others still are
        return SignatureOutcome(name, "PAdES", _level_or_bb(sig, doc_ts, dss_rev), req.unreadable(exc),
                                notes=notes)
    indication = modifications(sig, integrity, indications.from_ades(result.ades_subindic,
                                                                      fetch_failed=req.fetch_failed))
    status = result.api_status
    stamps: list[Timestamp] = []
    sig_ts = timestamp_of("signature", getattr(status, "timestamp_validity", None))
    if sig_ts is not None:
        stamps.append(sig_ts)
    stamps += [stamp for stamp, ts in zip(doc_stamps, doc_ts, strict=True) if ts.signed_revision > sig.signed_revision]
    return SignatureOutcome(name, "PAdES", level_of(sig, doc_ts, dss_rev), indication, result, stamps,
                            report_source=sig, signing_time=sig.self_reported_timestamp, notes=notes)


def review_updates(req: Request, sig: EmbeddedPdfSignature) -> list[str]:
    """Coverage and the difference analysis of the updates after ``sig``; the notes say what was not done.

    pyHanko's analysis follows every object of each later revision; on real files it can
    meet references no cross-reference section resolves. Then the signed revision is still
    checked (coverage), the later updates are not judged, and the answer says so.
    """
    try:
        sig.compute_integrity_info(diff_policy=pdf_spec(req).diff_policy)
        return []
    except Exception:  # noqa: BLE001 - untrusted input: degrade to what can be validated
        sig.diff_result = None
        sig.compute_integrity_info(skip_diff=True)
        return ["the changes made after this signature could not be analysed (unreadable cross-reference data)"]


def page_count(reader: PdfFileReader, revision: int | None) -> int | None:
    try:
        root = reader.root if revision is None else reader.get_historical_root(revision)
        return int(root["/Pages"].get_object()["/Count"])
    except Exception:  # noqa: BLE001 - untrusted input: unknown
        return None


def modifications(sig: EmbeddedPdfSignature, integrity: dict[str, Any],
                  indication: indications.Indication) -> indications.Indication:
    """A change after signing that the signature does not allow decides the answer.

    Pages added or removed change what was signed: ``TOTAL_FAILED``/``FORMAT_FAILURE`` (as
    EN 319 102-1 validators such as EU DSS report it). Any other change the signature does
    not allow is ``INDETERMINATE``/``SIG_CONSTRAINTS_FAILURE`` whatever else was found (a
    ``TRY_LATER`` or an expired certificate would tell the client to retry, or that a
    time-stamp could save a document that will never validate)."""
    if integrity.get("docmdp_ok") is not False or indication.indication == indications.TOTAL_FAILED:
        return indication
    signed, now = page_count(sig.reader, sig.signed_revision), page_count(sig.reader, None)
    if signed is not None and now is not None and signed != now:
        return indications.failed(AdESFailure.FORMAT_FAILURE)
    return indications.indeterminate(AdESIndeterminate.SIG_CONSTRAINTS_FAILURE)


async def validate_pdf(req: Request, data: bytes) -> list[SignatureOutcome]:
    found = open_pdf(data, req.settings)
    sigs, doc_ts = found.regular, found.doc_ts
    if not sigs and not doc_ts and not found.broken:
        raise BadDocument("the PDF holds no signature")
    for sig in sigs + doc_ts:
        req.carry(_known_safely(sig))
    dss_rev = dss_revision(found.reader)
    doc_stamps = [await _doc_timestamp(req, ts, dss_rev) for ts in doc_ts]
    out = [await _signature(req, sig, i, doc_stamps, doc_ts, dss_rev) for i, sig in enumerate(sigs)]
    out += [SignatureOutcome(name, "PAdES", B_B, indications.failed(AdESFailure.FORMAT_FAILURE))
            for name in found.broken]
    if not sigs:  # a document carrying only document timestamps: report each as itself
        for ts, stamp in zip(doc_ts, doc_stamps, strict=True):
            out.append(SignatureOutcome(ts.field_name or "timestamp", "PAdES-DTS", B_T,
                                        indications.Indication(stamp.indication, stamp.sub_indication), None, [stamp]))
    return out
