"""pyHanko alone on the real-world corpus: its classic validation API, with the same trust and time.

This is what a developer gets from the library under rssp without rssp's processes: each
signature validated by ``async_validate_pdf_signature`` / ``async_validate_pdf_timestamp`` /
``async_validate_cms_signature`` / ``async_validate_detached_cms``, the PDF's DSS and the CMS's
embedded revocation data given to the validation context, nothing fetched, hard-fail
revocation, at the manifest's validation time. Its status is read as an indication the way
EN 319 102-1 would (:func:`verdict_of`), so :func:`realworld_corpus.agrees` can judge it.
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Sequence
from datetime import datetime
from io import BytesIO
from typing import Any

from asn1crypto import cms, core, crl, ocsp, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import (
    async_validate_detached_cms,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.status import SignatureStatus
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from realworld_corpus import ERROR, Verdict, overall

OCSP_RI = "1.3.6.1.5.5.7.16.2"


def _list_of(spec: type) -> type[core.SequenceOf]:
    return type(f"ListOf{spec.__name__}", (core.SequenceOf,), {"_child_spec": spec})


class _RevVals(core.Sequence):
    """TS 101 733 RevocationValues (explicit tags), which asn1crypto does not register."""

    _fields = [("crls", _list_of(crl.CertificateList), {"explicit": 0, "optional": True}),
               ("basic", _list_of(ocsp.BasicOCSPResponse), {"explicit": 1, "optional": True})]


def _as_response(basic: ocsp.BasicOCSPResponse) -> ocsp.OCSPResponse:
    return ocsp.OCSPResponse({"response_status": "successful",
                              "response_bytes": {"response_type": "basic_ocsp_response", "response": basic}})


def _tolerant(parts: Any, read: Any) -> None:
    for part in parts:
        with contextlib.suppress(Exception):  # an unreadable part of a real file is simply not there
            read(part)


def _embedded(signed: cms.SignedData) -> tuple[list[x509.Certificate], list[crl.CertificateList],
                                               list[ocsp.OCSPResponse]]:
    """The certificates and revocation data a SignedData carries: ``certificates``, ``crls`` (CRLs
    and RFC 5940 OCSP responses), the certificate-values and revocation-values attributes; each
    part read on its own."""
    certs: list[x509.Certificate] = []
    crls: list[crl.CertificateList] = []
    ocsps: list[ocsp.OCSPResponse] = []

    def other(choice: Any) -> None:
        if choice.name == "crl":
            crls.append(choice.chosen)
            return
        fmt, info = (core.Sequence.load(choice.chosen.untag().dump())[i] for i in (0, 1))
        if fmt.dump() == core.ObjectIdentifier(OCSP_RI).dump():
            ocsps.append(ocsp.OCSPResponse.load(info.dump()))
        elif fmt.dump() == core.ObjectIdentifier("1.3.6.1.5.5.7.48.1.1").dump():  # a BasicOCSPResponse
            ocsps.append(_as_response(ocsp.BasicOCSPResponse.load(info.dump())))

    def unsigned(attr: Any) -> None:
        raw = attr["values"][0].dump()
        if attr["type"].dotted == "1.2.840.113549.1.9.16.2.24":  # revocation-values
            values = _RevVals.load(raw)
            crls.extend(values["crls"] or [])
            ocsps.extend(_as_response(b) for b in values["basic"] or [])
        elif attr["type"].dotted == "1.2.840.113549.1.9.16.2.23":  # certificate-values
            certs.extend(_list_of(x509.Certificate).load(raw))

    _tolerant(signed["certificates"] or [], lambda c: certs.append(c.chosen) if c.name == "certificate" else None)
    _tolerant(signed["crls"] or [], other)
    _tolerant(signed["signer_infos"], lambda si: _tolerant(si["unsigned_attrs"] or [], unsigned))
    return certs, crls, ocsps


def _bytes(value: Any) -> bytes:
    value = value.get_object() if hasattr(value, "get_object") else value
    return value if isinstance(value, bytes) else value.data


def context(anchors: list[x509.Certificate], moment: datetime, certs: Sequence[x509.Certificate] = (),
            crls: Sequence[Any] = (), ocsps: Sequence[Any] = ()) -> ValidationContext:
    return ValidationContext(trust_roots=anchors, other_certs=list(certs), crls=list(crls), ocsps=list(ocsps),
                             moment=moment, allow_fetching=False, revocation_mode="hard-fail",
                             retroactive_revinfo=True)


def verdict_of(status: Any) -> Verdict:
    if not (status.intact and status.valid):
        return Verdict("TOTAL_FAILED", "HASH_FAILURE" if not status.intact else "SIG_CRYPTO_FAILURE")
    if getattr(status, "docmdp_ok", None) is False or getattr(status, "modification_level", None) \
            == ModificationLevel.OTHER:
        return Verdict("INDETERMINATE", "SIG_CONSTRAINTS_FAILURE")
    bottom_line = getattr(status, "bottom_line", None)
    if bottom_line is None:  # CMS and time-stamp statuses: intact, valid and trusted
        bottom_line = status.trusted
    if bottom_line:
        return Verdict("TOTAL_PASSED")
    if getattr(status, "revoked", False):
        return Verdict("INDETERMINATE", "REVOKED_NO_POE")
    problem = getattr(status, "trust_problem_indic", None)
    return Verdict("INDETERMINATE", problem.standard_name if problem is not None else None)


async def _pdf(data: bytes, anchors: list[x509.Certificate], moment: datetime) -> Verdict:
    reader = PdfFileReader(BytesIO(data), strict=False)
    kwargs: dict[str, Any] = {}
    dss = DocumentSecurityStore.read_dss(reader) if "/DSS" in reader.root else None
    if dss is not None:
        kwargs = {"certs": list(dss.load_certs()), "crls": [crl.CertificateList.load(_bytes(c)) for c in dss.crls],
                  "ocsps": [ocsp.OCSPResponse.load(_bytes(o)) for o in dss.ocsps]}
    verdicts = []
    for sig in reader.embedded_signatures:
        certs, crls, ocsps = _embedded(sig.signed_data)
        vc = context(anchors, moment, certs + kwargs.get("certs", []), crls + kwargs.get("crls", []),
                     ocsps + kwargs.get("ocsps", []))
        status: SignatureStatus  # a document time-stamp's or a signature's
        if sig.sig_object_type == "/DocTimeStamp":
            status = await async_validate_pdf_timestamp(sig, validation_context=vc)
        else:
            status = await async_validate_pdf_signature(sig, vc)
        verdicts.append(verdict_of(status))
    return overall(verdicts)


async def _cms(data: bytes, detached: bytes | None, anchors: list[x509.Certificate], moment: datetime) -> Verdict:
    signed = cms.ContentInfo.load(data)["content"]
    certs, crls, ocsps = _embedded(signed)
    vc = context(anchors, moment, certs, crls, ocsps)
    if detached is None:
        status = await async_validate_cms_signature(signed, validation_context=vc)
    else:
        status = await async_validate_detached_cms(detached, signed, signer_validation_context=vc)
    return verdict_of(status)


async def document(entry: dict[str, Any], data: bytes, detached: bytes | None,
                   anchors: list[x509.Certificate], moment: datetime) -> Verdict:
    try:
        if entry["kind"] == "pdf":
            return await _pdf(data, anchors, moment)
        return await _cms(data, detached, anchors, moment)
    except Exception as exc:  # noqa: BLE001 - pyHanko refusing the file is its answer
        return Verdict(ERROR, detail=f"{type(exc).__name__}: {exc}"[:200])


async def path(leaf: x509.Certificate, chain: list[x509.Certificate], crls: list[crl.CertificateList],
               anchors: list[x509.Certificate], moment: datetime) -> tuple[Verdict, str | None]:
    vc = ValidationContext(trust_roots=anchors, other_certs=chain, crls=crls, moment=moment, allow_fetching=False,
                           revocation_mode="hard-fail", retroactive_revinfo=True)
    try:
        await CertificateValidator(leaf, intermediate_certs=chain, validation_context=vc).async_validate_path()
    except RevokedError as exc:
        return Verdict("INDETERMINATE", "REVOKED_NO_POE", str(exc)[:200]), "revoked"
    except Exception as exc:  # noqa: BLE001 - any failure is "not valid"
        return Verdict("INDETERMINATE", None, f"{type(exc).__name__}: {exc}"[:200]), None
    return Verdict("TOTAL_PASSED"), "valid"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()
