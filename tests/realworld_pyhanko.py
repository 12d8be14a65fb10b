"""pyHanko alone on the real-world corpus: its classic validation API, with the same trust and time.

This is what a developer gets from the library under rssp without rssp's processes: each
signature validated by ``async_validate_pdf_signature`` / ``async_validate_pdf_timestamp`` /
``async_validate_cms_signature`` / ``async_validate_detached_cms``, the PDF's DSS and the CMS's
embedded revocation data given to the validation context, nothing fetched, hard-fail
revocation, at the manifest's validation time. Its status is read as an indication the way
EN 319 102-1 would (:func:`verdict_of`), so :func:`realworld_corpus.agrees` can judge it.
"""

from __future__ import annotations

import hashlib
from datetime import datetime
from io import BytesIO
from typing import Any

from asn1crypto import cms, crl, ocsp, x509
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.diff_analysis import ModificationLevel
from pyhanko.sign.validation import (
    async_validate_detached_cms,
    async_validate_pdf_signature,
    async_validate_pdf_timestamp,
)
from pyhanko.sign.validation.dss import DocumentSecurityStore
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from realworld_corpus import ERROR, Verdict, overall

OCSP_RI = "1.3.6.1.5.5.7.16.2"


def _embedded(signed: cms.SignedData) -> Any:
    try:
        return _embedded_data(signed)
    except Exception:  # noqa: BLE001 - unreadable embedded data: none
        return [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"], [], []


def _embedded_data(signed: cms.SignedData) -> tuple[list[x509.Certificate], list[crl.CertificateList],
                                                 list[ocsp.OCSPResponse]]:
    certs = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
    crls, ocsps = [], []
    for choice in signed["crls"] or []:
        if choice.name == "crl":
            crls.append(choice.chosen)
        elif choice.chosen["other_rev_info_format"].dotted == OCSP_RI:
            ocsps.append(ocsp.OCSPResponse.load(choice.chosen["other_rev_info"].dump()))
    for signer in signed["signer_infos"]:
        for attr in signer["unsigned_attrs"] or []:
            if attr["type"].dotted == "1.2.840.113549.1.9.16.2.24":  # revocation-values
                values = attr["values"][0]
                crls += list(values["crl_vals"] or [])
                ocsps += [ocsp.OCSPResponse({"response_status": "successful", "response_bytes": {
                    "response_type": "basic_ocsp_response", "response": b}}) for b in values["ocsp_vals"] or []]
            if attr["type"].dotted == "1.2.840.113549.1.9.16.2.23":  # certificate-values
                certs += list(attr["values"][0])
    return certs, crls, ocsps


def _bytes(value: Any) -> bytes:
    value = value.get_object() if hasattr(value, "get_object") else value
    return value if isinstance(value, bytes) else value.data


def context(anchors: list[x509.Certificate], moment: datetime, certs: list[x509.Certificate] = (),
            crls: list[Any] = (), ocsps: list[Any] = ()) -> ValidationContext:
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
