"""Opening a client's PDF for signing: defensive parsing, fixed error texts, the PDF rules checked first.

The document is untrusted input. Everything the PAdES engine will later touch in it (header, cross
references of every revision, catalog, AcroForm fields, the first page a new field's widget goes
on, the certification data, an existing DSS) is read here, once, and any failure becomes a
:class:`~rssp.documents.model.DocumentError` with one of the fixed texts below: never a pyHanko or
parser exception, never text taken from the document.

Refused on purpose:

- **encrypted PDFs**: the service has no password to open them, and a signature inside an
  encrypted file would need the file key to be embedded correctly;
- **hybrid cross-reference files** (a classic xref table plus an ``/XRefStm``): readers disagree on
  which objects such a file contains, the basis of "shadow" attacks on signed PDFs; pyHanko refuses
  to sign them in strict mode too;
- the file is read in pyHanko's **strict** mode with its default decode limits (no decompression
  bombs), so what is signed is what every reader sees.

And the PDF rules for signatures (ISO 32000-2 §12.8):

- a **certification** (DocMDP) signature must be the first signature of a document: asked on a
  document that already carries a signature or a document timestamp, it is refused (the client
  can sign it as ``Revision``);
- a document whose certification signature, or an earlier signature's DocMDP lock, has ``/P 1``
  (no changes at all) cannot take another signature;
- a named field that is already signed, or that is not a signature field, is refused; a name that
  does not exist yet becomes a new top-level field (so no period in it); without a name a fresh
  ``Signature<N>`` is chosen, so an existing empty field is never filled by accident.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from io import BytesIO
from typing import Any

from pyhanko.pdf_utils import generic
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter
from pyhanko.pdf_utils.misc import FormFillingError
from pyhanko.sign.fields import MDPPerm, enumerate_sig_fields
from pyhanko.sign.validation.dss import DocumentSecurityStore

from rssp.documents.model import DocumentError

NOT_A_PDF = "The document is not a PDF"
TRUNCATED = "The PDF is truncated (no end-of-file marker)"
BROKEN = "The PDF's structure is broken"
ENCRYPTED = "Encrypted PDFs cannot be signed"
HYBRID = "PDFs with hybrid cross-reference sections cannot be signed"
ALREADY_SIGNED = ("A certification signature must be the first signature of a document; "
                  "this one is already signed (use Revision)")
NO_CHANGES = "The document's DocMDP permissions (P=1) forbid any further signature"
FIELD_SIGNED = "The requested signature field is already signed"
FIELD_NOT_SIGNATURE = "The requested field is not a signature field"
FIELD_NAME = "The requested signature field name is not valid for a new field"

HEADER_WINDOW = 1024  # readers accept a header anywhere in the first 1024 bytes
EOF_WINDOW = 1024
MAX_FIELD_NAME = 127


@dataclass
class PdfToSign:
    """A PDF that passed the checks, ready for pyHanko's incremental writer."""

    writer: IncrementalPdfFileWriter
    field_name: str


def open_for_signing(data: bytes, *, certify: bool, field_name: str | None) -> PdfToSign:
    """Parse ``data`` and check it can take the signature asked for (see the module docstring)."""
    _check_envelope_bytes(data)
    try:
        writer = IncrementalPdfFileWriter(BytesIO(data), strict=True)
        reader = writer.prev
        if reader.encrypted or "/Encrypt" in reader.trailer:
            raise DocumentError(ENCRYPTED)
        if reader.xrefs.hybrid_xrefs_present:
            raise DocumentError(HYBRID)
        name = _target_field(writer, field_name)
        if certify and _has_signatures(writer):
            raise DocumentError(ALREADY_SIGNED)
        if _forbids_changes(writer):
            raise DocumentError(NO_CHANGES)
        _touch_what_signing_reads(writer, new_field=field_name is None or _is_new(writer, name))
    except DocumentError:
        raise
    except Exception:  # noqa: BLE001 - untrusted input: any parser failure is a broken document
        raise DocumentError(BROKEN) from None
    return PdfToSign(writer, name)


def _check_envelope_bytes(data: bytes) -> None:
    """The two failures a client can fix by sending the right file get their own texts."""
    if b"%PDF-" not in data[:HEADER_WINDOW]:
        raise DocumentError(NOT_A_PDF)
    if b"%%EOF" not in data[-EOF_WINDOW:]:
        raise DocumentError(TRUNCATED)


def _top_level_fields(writer: IncrementalPdfFileWriter) -> Iterator[generic.DictionaryObject]:
    acroform = writer.root.get("/AcroForm")
    if acroform is None:
        return
    for ref in acroform.get_object().get("/Fields", generic.ArrayObject()):
        yield ref.get_object()


def _target_field(writer: IncrementalPdfFileWriter, requested: str | None) -> str:
    """The requested field if it can be signed, else a fresh ``Signature<N>``."""
    if requested is not None:
        try:
            found = list(enumerate_sig_fields(writer, with_name=requested))
        except FormFillingError:  # pyHanko: the name exists but is not a signature field
            raise DocumentError(FIELD_NOT_SIGNATURE) from None
        if any(value for _name, value, _ref in found):
            raise DocumentError(FIELD_SIGNED)
        if not found and not _valid_new_name(requested):
            raise DocumentError(FIELD_NAME)
        return requested
    taken = {str(f.get("/T", "")) for f in _top_level_fields(writer)}
    taken |= {name for name, _value, _ref in enumerate_sig_fields(writer)}
    number = 1
    while f"Signature{number}" in taken:
        number += 1
    return f"Signature{number}"


def _valid_new_name(name: str) -> bool:
    """A new field is top-level: a partial name, no period (ISO 32000-2 §12.7.4.2), short and printable."""
    return 0 < len(name) <= MAX_FIELD_NAME and "." not in name and name.isprintable()


def _is_new(writer: IncrementalPdfFileWriter, name: str) -> bool:
    return not list(enumerate_sig_fields(writer, with_name=name))


def _has_signatures(writer: IncrementalPdfFileWriter) -> bool:
    """Any filled signature field: signatures and document timestamps alike (pyHanko's rule too)."""
    return any(True for _ in enumerate_sig_fields(writer, filled_status=True))


def _forbids_changes(writer: IncrementalPdfFileWriter) -> bool:
    """A DocMDP transform with P=1 in the certification or in any earlier signature's references."""
    perms = writer.root.get("/Perms")
    sig_dicts: list[Any] = []
    if perms is not None and "/DocMDP" in perms.get_object():
        sig_dicts.append(perms.get_object()["/DocMDP"].get_object())
    sig_dicts += [value.get_object() for _name, value, _ref in enumerate_sig_fields(writer, filled_status=True)]
    for sig in sig_dicts:
        for ref in sig.get("/Reference", generic.ArrayObject()):
            ref = ref.get_object()
            if ref.get("/TransformMethod") != "/DocMDP":
                continue
            params = ref.get("/TransformParams", generic.DictionaryObject()).get_object()
            if int(params.get("/P", MDPPerm.FILL_FORMS.value)) == MDPPerm.NO_CHANGES.value:
                return True
    return False


def _touch_what_signing_reads(writer: IncrementalPdfFileWriter, *, new_field: bool) -> None:
    """Resolve now what pyHanko resolves lazily while signing, so a broken object fails here."""
    if new_field:
        page_ref, _resources = writer.find_page_for_modification(0)
        page_ref.get_object().get("/Annots")
    if "/DSS" in writer.root:
        DocumentSecurityStore.read_dss(writer)
