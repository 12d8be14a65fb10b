"""XAdES / XML-DSig: every ``ds:Signature`` of an XML document (or a detached XML signature).

The document is parsed by rssp's safe XML reader (:func:`rssp.documents.xades_xml.parse_xml`: no
DTD, so no external entity and no entity expansion; bounded depth and element count; nothing
fetched), the same the signing engine uses. A document that is not acceptable XML is a 400.

Each top-level ``ds:Signature`` (one inside another's unsigned properties is a counter-signature:
not validated, as for CAdES) is validated in document order (``signature-1``, ...) in two parts:
the XML-DSig core and the signer's identification (:mod:`.xades_core`), then the certificate path
with the time-stamps and proofs of existence (:mod:`.xades_time`). A core that fails decides the
answer (no path is built for a signature that does not verify).

``format``: ``XAdES-enveloped`` (the signature inside the document it signs), ``XAdES-enveloping``
(the signature is the document's root), ``XAdES-detached`` (sent as ``signature``, the content as
``document`` or ``documentDigests``); ``XMLDSig-...`` when the signature has no XAdES qualifying
properties. ``level``: B-B with signed properties, B-T with a SignatureTimeStamp, B-LT when
certificate or revocation values follow, B-LTA with an archive time-stamp; ``none`` for plain
XML-DSig. ``signedObjects`` says what each reference covers (see :mod:`.xades_core`).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from lxml import etree

from extensions.validates.cades import HASHES
from extensions.validates.errors import BadDocument
from extensions.validates.times import gtime
from extensions.validates.outcome import B_B, B_LT, B_LTA, B_T, SignatureOutcome
from extensions.validates.request import Request
from extensions.validates.xades_core import Content, Core, check_core
from extensions.validates.xades_report import XadesReportSource
from extensions.validates.xades_time import validate_time
from rssp.documents.model import DocumentError
from rssp.documents.xades_refs import IdIndex
from rssp.documents.xades_xml import ds, local_name, parse_xml

MAX_SIGNATURES = 20
NONE = "none"


@dataclass
class XadesOutcome(SignatureOutcome):
    """A signature outcome with the objects the signature covers (what the application must read)."""

    signed_objects: list[dict[str, str]] = field(default_factory=list)

    def view(self) -> dict[str, Any]:
        out = super().view()
        out["signedObjects"] = list(self.signed_objects)
        if self.signing_time is not None and "signingTime" not in out:
            out["signingTime"] = gtime(self.signing_time)
        return out


def _top_signatures(root: etree._Element) -> list[etree._Element]:
    """Signatures not inside another signature (counter-signatures and nested ones are skipped)."""
    found = [s for s in root.iter(ds("Signature")) if not any(a.tag == ds("Signature") for a in s.iterancestors())]
    if root.tag == ds("Signature"):
        found = [root]
    return found


def level_of(core: Core) -> str:
    props = core.qualifying
    if props is None:
        return NONE
    names = {local_name(e) for e in props.iter(etree.Element)
             if local_name(e.getparent()) in ("UnsignedSignatureProperties", "TimeStampValidationData")}
    if "ArchiveTimeStamp" in names:
        return B_LTA
    if "SignatureTimeStamp" not in names:
        return B_B
    if "RevocationValues" in names or "CertificateValues" in names:
        return B_LT
    return B_T


def _form(core: Core, root: etree._Element, detached: bool) -> str:
    kind = "XAdES" if core.qualifying is not None else "XMLDSig"
    if detached:
        return f"{kind}-detached"
    return f"{kind}-enveloping" if core.signature is root else f"{kind}-enveloped"


async def _one(req: Request, tree: etree._ElementTree, ids: IdIndex, signature: etree._Element, position: int,
               content: Content, detached: bool) -> XadesOutcome:
    core = check_core(tree, ids, signature, content)
    name = f"signature-{position + 1}"
    form, level = _form(core, tree.getroot(), detached), level_of(core)
    source = XadesReportSource(core)
    if core.indication is not None:
        return XadesOutcome(name, form, level, core.indication, None, report_source=source,
                            signing_time=core.signing_time, notes=list(core.notes),
                            signed_objects=core.signed_objects)
    indication, result, stamps = await validate_time(req, core, tree, ids, content)
    return XadesOutcome(name, form, level, indication, result, stamps, report_source=source,  # type: ignore[arg-type]
                        signing_time=core.signing_time, notes=list(core.notes), signed_objects=core.signed_objects)


def parse(data: bytes) -> etree._ElementTree:
    try:
        return parse_xml(data)
    except DocumentError as exc:
        raise BadDocument(exc.description) from None


async def validate_xml(req: Request, data: bytes, detached: Any = None) -> list[SignatureOutcome]:
    """Every signature of the XML ``data``; ``detached`` (document or digests) for a detached signature."""
    tree = parse(data)
    signatures = _top_signatures(tree.getroot())
    if not signatures:
        raise BadDocument("the XML document holds no signature")
    if len(signatures) > MAX_SIGNATURES:
        raise BadDocument(f"an XML document with 1 to {MAX_SIGNATURES} signatures is supported")
    content = _content(detached)
    ids = IdIndex(tree.getroot())
    return [await _one(req, tree, ids, s, i, content, detached is not None) for i, s in enumerate(signatures)]


def _content(detached: Any) -> Content:
    """The client's detached content (:class:`extensions.validates.cades.Detached`) as XAdES reads it."""
    if detached is None:
        return Content()
    return Content(detached.document, tuple(detached.digests), HASHES.get(detached.hash_oid or ""))
