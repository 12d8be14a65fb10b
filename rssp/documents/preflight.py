"""Cheap checks that a document can be signed as asked, run before the SAD is spent.

A refused call must spend nothing, so what the engines would refuse for the document itself
(not a PDF, encrypted, a certification on a document already signed, a parallel signature on
something that is not CMS SignedData with its content) is found here first. The engines check
again: this is the early answer, not the only guard.
"""

from __future__ import annotations

from io import BytesIO

from asn1crypto import cms
from pyhanko.pdf_utils.misc import PdfError
from pyhanko.pdf_utils.reader import PdfFileReader

from rssp.documents.model import DocumentError, DocumentOptions


def preflight(fmt: str, opts: DocumentOptions, data: bytes | None) -> None:
    if data is None:
        return
    if fmt == "P":
        _check_pdf(data, opts)
    elif opts.envelope == "Parallel":
        _check_signed_data(data)


def _check_pdf(data: bytes, opts: DocumentOptions) -> None:
    if not data.lstrip()[:5] == b"%PDF-":
        raise DocumentError("The document is not a PDF")
    try:
        reader = PdfFileReader(BytesIO(data), strict=False)
        encrypted = reader.encrypted
        signed = bool(list(reader.embedded_regular_signatures)) if not encrypted else False
    except (PdfError, ValueError, KeyError, TypeError, IndexError, AttributeError, RecursionError):
        raise DocumentError("The PDF cannot be read") from None
    if encrypted:
        raise DocumentError("Encrypted PDFs cannot be signed")
    if signed and opts.envelope == "Certification":
        raise DocumentError("A certification signature must be the first signature of a PDF; use Revision")


def _check_signed_data(data: bytes) -> None:
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        content = info["content"]["encap_content_info"]["content"]
    except (ValueError, TypeError, KeyError):
        raise DocumentError("A Parallel signature needs a CMS SignedData document") from None
    if content.native is None:
        raise DocumentError("A Parallel signature needs the signed content inside the CMS (attached)")
