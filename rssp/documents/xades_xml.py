"""XML for XAdES: safe parsing, the namespaces and algorithm URIs, canonicalisation.

Shared by the signing engine (:mod:`.xades`) and the validation extension, so both read a
document the same way and refuse the same attacks:

- no DTD at all: a document with a ``<!DOCTYPE`` is refused before it is parsed, and again if
  the parser finds one (an encoding the byte scan did not see). Without a DTD there are no
  entity declarations, so neither external entities (XXE: files, URLs) nor entity expansion
  ("billion laughs") can happen; the parser is also told not to load DTDs, resolve entities or
  touch the network;
- bounded work: libxml2's default limits stay on (``huge_tree`` off: nesting depth, text node
  size), and the element count is capped (:data:`MAX_ELEMENTS`); the byte size is the caller's
  limit (the request size checks).

Canonicalisation is libxml2's, through lxml (``etree.tostring(..., method="c14n")``): exclusive
XML-C14N 1.0 (what rssp signs with) and inclusive C14N 1.0, with or without comments. lxml has no
C14N 1.1; it differs from 1.0 only in how ``xml:id``/``xml:base`` of ancestors are inherited, so a
1.1 transform is computed as 1.0 (documents that use ``xml:base`` on an ancestor of a signed
subtree are the only ones this could affect).

Why not signxml or python-xmlsec: neither is installed with rssp (and signxml would only build the
XML-DSig core; no maintained Python library builds XAdES unsigned properties, the archive
time-stamp in particular), while lxml is (pyHanko depends on it). The engine writes the ETSI EN
319 132-1 elements on lxml itself.
"""

from __future__ import annotations

from lxml import etree

from rssp.documents.model import DocumentError

DS = "http://www.w3.org/2000/09/xmldsig#"
XADES = "http://uri.etsi.org/01903/v1.3.2#"
XADES141 = "http://uri.etsi.org/01903/v1.4.1#"
XADES122 = "http://uri.etsi.org/01903/v1.2.2#"  # older signatures, read only
NSMAP_DS = {"ds": DS}
SIGNED_PROPERTIES_TYPE = "http://uri.etsi.org/01903#SignedProperties"

EXC_C14N = "http://www.w3.org/2001/10/xml-exc-c14n#"
EXC_C14N_COMMENTS = "http://www.w3.org/2001/10/xml-exc-c14n#WithComments"
C14N10 = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315"
C14N10_COMMENTS = "http://www.w3.org/TR/2001/REC-xml-c14n-20010315#WithComments"
C14N11 = "http://www.w3.org/2006/12/xml-c14n11"
C14N11_COMMENTS = "http://www.w3.org/2006/12/xml-c14n11#WithComments"
ENVELOPED = "http://www.w3.org/2000/09/xmldsig#enveloped-signature"
BASE64 = "http://www.w3.org/2000/09/xmldsig#base64"
XPATH = "http://www.w3.org/TR/1999/REC-xpath-19991116"
XPATH_FILTER2 = "http://www.w3.org/2002/06/xmldsig-filter2"

# algorithm URI -> (exclusive, with comments)
CANONICALISATIONS = {
    EXC_C14N: (True, False), EXC_C14N_COMMENTS: (True, True),
    C14N10: (False, False), C14N10_COMMENTS: (False, True),
    C14N11: (False, False), C14N11_COMMENTS: (False, True),
}
DEFAULT_C14N = C14N10  # XML-DSig's default, and the XAdES time-stamps' when they name none

DIGESTS = {
    "http://www.w3.org/2000/09/xmldsig#sha1": "sha1",
    "http://www.w3.org/2001/04/xmldsig-more#sha224": "sha224",
    "http://www.w3.org/2001/04/xmlenc#sha256": "sha256",
    "http://www.w3.org/2001/04/xmldsig-more#sha384": "sha384",
    "http://www.w3.org/2001/04/xmlenc#sha512": "sha512",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-256": "sha3_256",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-384": "sha3_384",
    "http://www.w3.org/2007/05/xmldsig-more#sha3-512": "sha3_512",
}
DIGEST_URIS = {name: uri for uri, name in DIGESTS.items()}

# signature method URI -> (key kind, hash, padding)
SIGNATURES = {
    "http://www.w3.org/2000/09/xmldsig#rsa-sha1": ("rsa", "sha1", "pkcs1v15"),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha224": ("rsa", "sha224", "pkcs1v15"),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha256": ("rsa", "sha256", "pkcs1v15"),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha384": ("rsa", "sha384", "pkcs1v15"),
    "http://www.w3.org/2001/04/xmldsig-more#rsa-sha512": ("rsa", "sha512", "pkcs1v15"),
    "http://www.w3.org/2007/05/xmldsig-more#sha256-rsa-MGF1": ("rsa", "sha256", "pss"),
    "http://www.w3.org/2007/05/xmldsig-more#sha384-rsa-MGF1": ("rsa", "sha384", "pss"),
    "http://www.w3.org/2007/05/xmldsig-more#sha512-rsa-MGF1": ("rsa", "sha512", "pss"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha1": ("ec", "sha1", "ecdsa"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha224": ("ec", "sha224", "ecdsa"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha256": ("ec", "sha256", "ecdsa"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha384": ("ec", "sha384", "ecdsa"),
    "http://www.w3.org/2001/04/xmldsig-more#ecdsa-sha512": ("ec", "sha512", "ecdsa"),
}
SIGNATURE_URIS = {value: uri for uri, value in SIGNATURES.items()}

MAX_ELEMENTS = 200_000  # far above any invoice or contract; bounds the work of every pass over the tree
NOT_XML = "The document is not well-formed XML"
HAS_DTD = "XML documents with a DTD (DOCTYPE) are not accepted"
TOO_BIG = "The XML document has too many elements"


def _parser() -> etree.XMLParser:
    return etree.XMLParser(resolve_entities=False, no_network=True, load_dtd=False, dtd_validation=False,
                           huge_tree=False, remove_blank_text=False, remove_comments=False, remove_pis=False,
                           collect_ids=False)


def looks_like_dtd(data: bytes) -> bool:
    """A DOCTYPE in the bytes as sent (UTF-8/ASCII-compatible encodings; others are caught after parsing)."""
    return b"<!DOCTYPE" in data or b"<\x00!\x00D\x00O\x00C\x00T\x00Y\x00P\x00E" in data \
        or b"\x00<\x00!\x00D\x00O\x00C\x00T\x00Y\x00P\x00E" in data


def parse_xml(data: bytes) -> etree._ElementTree:
    """The document as an lxml tree, or :class:`DocumentError` (fixed texts) for anything unsafe or malformed."""
    if looks_like_dtd(data):
        raise DocumentError(HAS_DTD)
    try:
        root = etree.fromstring(data, _parser())
    except (etree.XMLSyntaxError, ValueError):
        raise DocumentError(NOT_XML) from None
    tree = root.getroottree()
    info = tree.docinfo
    if info.doctype or info.internalDTD is not None or info.externalDTD is not None:
        raise DocumentError(HAS_DTD)
    for count, node in enumerate(root.iter(), 1):
        if isinstance(node, etree._Entity):  # an entity reference left unexpanded: only a DTD declares one
            raise DocumentError(HAS_DTD)
        if count > MAX_ELEMENTS:
            raise DocumentError(TOO_BIG)
    return tree


def is_xml(data: bytes) -> bool:
    """Whether ``data`` is a well-formed, acceptable XML document (for choosing how to embed it)."""
    try:
        parse_xml(data)
    except DocumentError:
        return False
    return True


def canonicalize(node: etree._Element | etree._ElementTree, algorithm: str,
                 prefixes: list[str] | None = None) -> bytes:
    """``node`` (an element in its document, or a whole document) canonicalised with ``algorithm``."""
    exclusive, comments = CANONICALISATIONS[algorithm]
    out: bytes = etree.tostring(node, method="c14n", exclusive=exclusive, with_comments=comments,
                                inclusive_ns_prefixes=(prefixes or None) if exclusive else None)
    return out


def qname(namespace: str, local: str) -> str:
    return f"{{{namespace}}}{local}"


def ds(local: str) -> str:
    return qname(DS, local)


def child(parent: etree._Element, tag: str, text: str | None = None, **attrs: str) -> etree._Element:
    """A new child element (``tag`` in Clark notation), with text and attributes."""
    element = etree.SubElement(parent, tag, attrs)
    if text is not None:
        element.text = text
    return element


def local_name(node: etree._Element) -> str:
    return etree.QName(node).localname if isinstance(node.tag, str) else ""
