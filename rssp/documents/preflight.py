"""Cheap checks that a document can be signed as asked, run before the SAD is spent.

A refused call must spend nothing, so what the engines would refuse for the input itself (not
a PDF, encrypted, a certification on a document already signed, unsupported ``signed_props``, a
level the form cannot reach, XML that is not well-formed or carries a DTD, a parallel signature
on something that is not an attached CMS SignedData) is found here first, with the engines' own
checks and texts. The engines check again: this is the early answer, not the only guard.
"""

from __future__ import annotations

from asn1crypto import cms

from rssp.documents import cades, pades, xades
from rssp.documents.cades_props import signed_attributes
from rssp.documents.model import DocumentError, Output
from rssp.documents.pdf_input import open_for_signing


def preflight(output: Output) -> None:
    """Raise :class:`DocumentError` for an output its engine would refuse for its input."""
    opts = output.options
    if output.format == "P":
        if output.data is None:
            if opts.level == "B-LTA":
                raise DocumentError(pades.LTA_NEEDS_DOCUMENT)
            if opts.signed_props:
                raise DocumentError(pades.PROPS_NEED_DOCUMENT)
            return
        pades.pdf_signed_props(opts.signed_props)
        open_for_signing(output.data, certify=opts.envelope == "Certification", field_name=opts.field_name)
        return
    if output.format == "X":
        if output.data is None:
            xades.check_digest_options(opts)
        else:
            xades.check_document(output.data, opts)  # parses the XML safely: no DTD, bounded
        return
    _cades_signed_props(opts.signed_props)
    if output.data is not None and opts.envelope == "Parallel":
        _check_signed_data(output.data)
        cades.check_parallel(output.data, None)


def _cades_signed_props(props: tuple[tuple[str, str | None], ...]) -> None:
    """The CAdES engine's own check, worded as the CSC error for the field."""
    try:
        signed_attributes(props)
    except DocumentError as exc:
        raise DocumentError(f"Invalid parameter signed_props: {exc.description}") from None


def _check_signed_data(data: bytes) -> None:
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise ValueError("not SignedData")
        attached = info["content"]["encap_content_info"]["content"].native is not None
    except (ValueError, TypeError, KeyError):
        raise DocumentError("A Parallel signature needs a CMS SignedData document") from None
    if not attached:
        raise DocumentError("A Parallel signature needs the signed content inside the CMS (attached)")
