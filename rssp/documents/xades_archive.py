"""What the XAdES time-stamps cover (ETSI EN 319 132-1 clauses 5.3 and 5.5.2): the octets to hash.

Written on lxml because no maintained Python library computes them (signxml, python-xmlsec and
xmlsec1 stop at the XML-DSig core). Shared by the signing engine (the message imprint it sends to
the TSA) and the validation extension (the imprint a token must carry), so both hash the same way.

``SignatureTimeStamp`` (5.3): the ``ds:SignatureValue`` element, canonicalised with the
time-stamp's ``ds:CanonicalizationMethod`` (inclusive C14N 1.0 when it names none).

``xades141:ArchiveTimeStamp`` (5.5.2.2, the not-distributed case; the JIS X 5093 long-term form),
the concatenation, each part canonicalised with the time-stamp's canonicalisation method, of:

1. every ``ds:Reference`` of ``ds:SignedInfo``, in order, processed (:mod:`.xades_refs`); an
   output that is a node set, or XML octets, is canonicalised again with that method (what EU
   DSS does, so the imprints agree with it);
2. ``ds:SignedInfo``, ``ds:SignatureValue`` and ``ds:KeyInfo`` (if present);
3. the children of ``xades:UnsignedSignatureProperties`` that come before this time-stamp;
4. every ``ds:Object`` of the signature except the one holding the ``xades:QualifyingProperties``
   (an archive time-stamp in the older v1.3.2 namespace leaves out, as TS 101 903 1.3.2 did,
   the objects a reference points at as well).
"""

from __future__ import annotations

from collections.abc import Callable

from lxml import etree

from rssp.documents.model import DocumentError
from rssp.documents.xades_refs import IdIndex, process
from rssp.documents.xades_xml import CANONICALISATIONS, DEFAULT_C14N, XADES, canonicalize, ds, parse_xml, qname

QUALIFYING = (qname(XADES, "QualifyingProperties"), qname("http://uri.etsi.org/01903/v1.2.2#", "QualifyingProperties"))


def c14n_method(stamp: etree._Element) -> str:
    """A time-stamp element's canonicalisation method (inclusive C14N 1.0 by default)."""
    method = stamp.find(ds("CanonicalizationMethod"))
    algorithm = method.get("Algorithm") if method is not None else None
    return algorithm or DEFAULT_C14N


def signature_timestamp_input(signature: etree._Element, algorithm: str) -> bytes:
    value = signature.find(ds("SignatureValue"))
    if value is None:
        raise DocumentError("the signature has no SignatureValue")
    return canonicalize(value, algorithm)


def _recanonicalised(data: bytes, algorithm: str) -> bytes:
    try:
        return canonicalize(parse_xml(data), algorithm)
    except DocumentError:
        return data


def archive_input(signature: etree._Element, tree: etree._ElementTree, ids: IdIndex,
                  external: Callable[[str | None], bytes | None], stamp: etree._Element | None,
                  algorithm: str, v141: bool = True) -> bytes:
    """The octets an archive time-stamp of ``signature`` covers; ``stamp`` is that time-stamp's
    element (None while making a new one: every unsigned property so far is covered)."""
    if algorithm not in CANONICALISATIONS:
        raise DocumentError("unsupported canonicalisation method in the archive time-stamp")
    parts: list[bytes] = []
    signed_info = signature.find(ds("SignedInfo"))
    if signed_info is None:
        raise DocumentError("the signature has no SignedInfo")
    referenced: set[str] = set()
    for reference in signed_info.iterchildren(ds("Reference")):
        uri = reference.get("URI") or ""
        if uri.startswith("#"):
            referenced.add(uri[1:])
        processed = process(reference, signature, tree, ids, external)
        is_xml = processed.node_set or processed.data.lstrip()[:1] == b"<"
        parts.append(_recanonicalised(processed.data, algorithm) if is_xml else processed.data)
    for name in ("SignedInfo", "SignatureValue", "KeyInfo"):
        element = signature.find(ds(name))
        if element is not None:
            parts.append(canonicalize(element, algorithm))
    for prop in _unsigned_before(signature, stamp):
        parts.append(canonicalize(prop, algorithm))
    for obj in signature.iterchildren(ds("Object")):
        if any(obj.find(tag) is not None for tag in QUALIFYING):
            continue
        if not v141 and obj.get("Id") in referenced:
            continue
        parts.append(canonicalize(obj, algorithm))
    return b"".join(parts)


def unsigned_signature_properties(signature: etree._Element) -> etree._Element | None:
    for tag in QUALIFYING:
        for props in signature.iterchildren(ds("Object")):
            found = props.find(f"{tag}/{{{etree.QName(tag).namespace}}}UnsignedProperties/"
                               f"{{{etree.QName(tag).namespace}}}UnsignedSignatureProperties")
            if found is not None:
                return found
    return None


def _unsigned_before(signature: etree._Element, stamp: etree._Element | None) -> list[etree._Element]:
    container = unsigned_signature_properties(signature)
    if container is None:
        return []
    out = []
    for prop in container.iterchildren(etree.Element):
        if prop is stamp:
            break
        out.append(prop)
    return out
