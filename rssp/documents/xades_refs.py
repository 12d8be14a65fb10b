"""XML-DSig references: what a ``ds:Reference`` points at, through its transforms, to the digest input.

The XML-DSig reference processing model (W3C XML-DSig 1.1, 4.4.3), for the references XAdES
signatures use, shared by the signing engine (to compute the digests it writes) and the
validation extension (to check them), so that both read a reference the same way:

- ``URI=""``: the whole document, comments removed; ``URI="#id"``: the element with that ``Id``
  (attributes ``Id``, ``ID``, ``id`` or ``xml:id``), comments removed; ``#xpointer(/)`` and
  ``#xpointer(id('x'))``: the same with comments kept;
- any other URI is *external*: never fetched. Its octets come from the caller (the detached
  content a client sent); without them the reference cannot be processed (:class:`Unresolved`);
- transforms: enveloped-signature; XPath ``not(ancestor-or-self::ds:Signature)`` and XPath
  Filter 2.0 ``subtract`` of the signatures (the two other common ways of writing "without the
  signatures"); the canonicalisations of :mod:`.xades_xml`; base64. Anything else is refused
  (:class:`Unsupported`): an arbitrary XPath would let a document choose the work done on it.

An ``Id`` that two elements carry makes every reference to it refused (:class:`Ambiguous`):
that is the basis of signature-wrapping attacks (the verifier checks one element, the
application reads the other).

A transform never changes the tree the caller holds: the document is copied (once per reference)
when a transform removes something from it; other references are read in place.
"""

from __future__ import annotations

import base64
import copy
import re
from collections.abc import Callable
from typing import TypeGuard
from dataclasses import dataclass

from lxml import etree

from rssp.documents.model import DocumentError
from rssp.documents.xades_xml import (
    BASE64,
    CANONICALISATIONS,
    DEFAULT_C14N,
    DS,
    ENVELOPED,
    EXC_C14N,
    XPATH,
    XPATH_FILTER2,
    canonicalize,
    ds,
    parse_xml,
)

ID_ATTRIBUTES = ("Id", "ID", "id", "{http://www.w3.org/XML/1998/namespace}id")
EXC_NS = "http://www.w3.org/2001/10/xml-exc-c14n#"
_ID_POINTER = re.compile(r"^xpointer\(id\(['\"]([^'\"]+)['\"]\)\)$")
MAX_TRANSFORMS = 8


class ReferenceError_(Exception):  # noqa: N801 - not the builtin
    """A reference that cannot be processed; ``reason`` is a fixed text."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class Unresolved(ReferenceError_):
    """Points at nothing in the document, or at external content that was not supplied."""


class Ambiguous(ReferenceError_):
    """Points at an Id carried by more than one element (signature wrapping)."""


class Unsupported(ReferenceError_):
    """Uses a transform or URI form this implementation does not process."""


class IdIndex:
    """Every element of a document by Id, and the Ids more than one element carries."""

    def __init__(self, root: etree._Element) -> None:
        self.by_id: dict[str, etree._Element] = {}
        self.duplicates: set[str] = set()
        for element in root.iter(etree.Element):
            for name in ID_ATTRIBUTES:
                value = element.get(name)
                if value is None:
                    continue
                if value in self.by_id and self.by_id[value] is not element:
                    self.duplicates.add(value)
                self.by_id.setdefault(value, element)

    def find(self, identifier: str) -> etree._Element:
        if identifier in self.duplicates:
            raise Ambiguous("two elements carry the Id a reference points at")
        found = self.by_id.get(identifier)
        if found is None:
            raise Unresolved("a reference points at an Id the document does not have")
        return found


@dataclass
class Processed:
    """The digest input of a reference, and what produced it."""

    data: bytes
    node_set: bool  # the transforms ended on a node set (serialised here with inclusive C14N 1.0)
    target: etree._Element | None  # the element pointed at (None: the whole document, or external)
    external: bool


@dataclass
class _NodeSet:
    """A node set: the element (None: the whole document) of ``tree``, with the signature that
    encloses the reference (None once removed). ``owned``: ``tree`` is a copy this reference may
    change; the caller's document is copied only when a transform removes something from it."""

    tree: etree._ElementTree
    element: etree._Element | None
    comments: bool
    enclosing: etree._Element | None = None
    owned: bool = False


def same_document(uri: str | None) -> TypeGuard[str]:
    return uri is not None and (uri == "" or uri.startswith("#"))


def target_of(uri: str, ids: IdIndex, tree: etree._ElementTree) -> tuple[etree._Element | None, bool]:
    """The element a same-document URI names (None: the whole document) and whether comments stay."""
    if uri == "":
        return None, False
    fragment = uri[1:]
    if fragment == "xpointer(/)":
        return None, True
    match = _ID_POINTER.match(fragment)
    if match:
        return ids.find(match.group(1)), True
    if fragment.startswith("xpointer("):
        raise Unsupported("an XPointer form other than #xpointer(/) or #xpointer(id('...'))")
    return ids.find(fragment), False


def _own(nodes: _NodeSet) -> _NodeSet:
    """The node set on a copy of the document (made once, before a transform removes anything)."""
    if nodes.owned:
        return nodes
    twin = copy.deepcopy(nodes.tree)
    return _NodeSet(twin, None if nodes.element is None else locate(twin, nodes.element), nodes.comments,
                    None if nodes.enclosing is None else locate(twin, nodes.enclosing), owned=True)


def locate(twin: etree._ElementTree, element: etree._Element) -> etree._Element:
    """The element of ``twin`` (a copy of ``element``'s document) at ``element``'s place."""
    steps = []
    node = element
    while (parent := node.getparent()) is not None:
        steps.append(parent.index(node))
        node = parent
    found = twin.getroot()
    for position in reversed(steps):
        found = found[position]
    return found


def _remove(element: etree._Element) -> None:
    """Take ``element`` out of its tree, the text that followed it staying where it was."""
    parent = element.getparent()
    if parent is None:
        raise Unsupported("a transform would remove the whole document")
    tail = element.tail or ""
    previous = element.getprevious()
    if previous is not None:
        previous.tail = (previous.tail or "") + tail
    else:
        parent.text = (parent.text or "") + tail
    parent.remove(element)


def _signatures(nodes: _NodeSet) -> list[etree._Element]:
    return list(nodes.tree.getroot().iter(ds("Signature")))


def _remove_all_signatures(nodes: _NodeSet) -> None:
    nodes.enclosing = None
    for signature in _signatures(nodes):
        if nodes.element is not None and (signature is nodes.element or signature in nodes.element.iterancestors()):
            raise Unsupported("a transform would remove the whole referenced element")
        if signature.getparent() is not None:
            _remove(signature)


def _xpath_removes_signatures(transform: etree._Element) -> bool:
    """An XPath 1.0 transform ``not(ancestor-or-self::P:Signature)`` (P bound to XML-DSig)."""
    [expression] = transform.findall(ds("XPath")) or [None]
    if expression is None or not expression.text:
        return False
    found = re.fullmatch(r"not\(ancestor-or-self::([\w.-]+):Signature\)", "".join(expression.text.split()))
    return found is not None and expression.nsmap.get(found.group(1)) == DS


def _filter2_removes_signatures(transform: etree._Element) -> bool:
    """XPath Filter 2.0 with one ``subtract`` of every (or the enclosing) signature."""
    filters = transform.findall(f"{{{XPATH_FILTER2}}}XPath")
    if len(filters) != 1 or filters[0].get("Filter") != "subtract" or not filters[0].text:
        return False
    text = "".join(filters[0].text.split())
    found = re.fullmatch(r"(?:/descendant::|//|here\(\)/ancestor::)([\w.-]+):Signature(?:\[1\])?", text)
    return found is not None and filters[0].nsmap.get(found.group(1)) == DS


def _prefixes(transform: etree._Element) -> list[str]:
    inclusive = transform.find(f"{{{EXC_NS}}}InclusiveNamespaces")
    if inclusive is None:
        return []
    return [p for p in (inclusive.get("PrefixList") or "").split() if p != "#default"]


def _serialise(nodes: _NodeSet, algorithm: str, prefixes: list[str] | None = None) -> bytes:
    _, comments = CANONICALISATIONS[algorithm]
    if comments and not nodes.comments:  # URI="" and "#id" drop comments whatever the c14n says
        algorithm = EXC_C14N if CANONICALISATIONS[algorithm][0] else DEFAULT_C14N
    node = nodes.element if nodes.element is not None else nodes.tree
    return canonicalize(node, algorithm, prefixes)


def _octets_to_nodes(data: bytes) -> _NodeSet:
    try:
        tree = parse_xml(data)
    except DocumentError:
        raise Unsupported("an XML transform on content that is not acceptable XML") from None
    return _NodeSet(tree, None, True, owned=True)


def process(reference: etree._Element, signature: etree._Element, tree: etree._ElementTree, ids: IdIndex,
            external: Callable[[str | None], bytes | None]) -> Processed:
    """The digest input of ``reference`` (a ``ds:Reference`` of ``signature``, in ``tree``)."""
    uri = reference.get("URI")
    current: _NodeSet | bytes
    target = None
    if same_document(uri):
        target, comments = target_of(uri, ids, tree)
        current = _NodeSet(tree, target, comments, signature)
    else:
        content = external(uri)
        if content is None:
            raise Unresolved("the signed content is not in the document (detached): it was not supplied")
        current = content
    transforms = reference.find(ds("Transforms"))
    steps = list(transforms.iterchildren(ds("Transform"))) if transforms is not None else []
    if len(steps) > MAX_TRANSFORMS:
        raise Unsupported("too many transforms")
    for step in steps:
        current = _apply(step, current)
    if isinstance(current, bytes):
        return Processed(current, False, target, not same_document(uri))
    return Processed(_serialise(current, DEFAULT_C14N), True, target, False)


def _apply(step: etree._Element, current: _NodeSet | bytes) -> _NodeSet | bytes:
    algorithm = step.get("Algorithm") or ""
    if algorithm in CANONICALISATIONS:
        nodes = _octets_to_nodes(current) if isinstance(current, bytes) else current
        return _serialise(nodes, algorithm, _prefixes(step) if CANONICALISATIONS[algorithm][0] else None)
    if algorithm == BASE64:
        text = current if isinstance(current, bytes) else _text(current)
        try:
            return base64.b64decode(b"".join(text.split()), validate=True)
        except ValueError:
            raise Unsupported("a base64 transform on content that is not Base64") from None
    if isinstance(current, bytes):
        current = _octets_to_nodes(current)
    if algorithm == ENVELOPED:
        enclosing = current.enclosing
        if enclosing is None or enclosing.getparent() is None:  # removed already, or the document itself
            return current
        if current.element is not None and (enclosing is current.element
                                            or enclosing in current.element.iterancestors()):
            raise Unsupported("an enveloped-signature transform would remove the referenced element")
        owned = _own(current)
        if owned.enclosing is None:  # _own keeps it (as its twin in the copy)
            raise RuntimeError("the enclosing element was lost copying the document")
        _remove(owned.enclosing)
        owned.enclosing = None
        return owned
    if (algorithm == XPATH and _xpath_removes_signatures(step)) or \
            (algorithm == XPATH_FILTER2 and _filter2_removes_signatures(step)):
        owned = _own(current)
        _remove_all_signatures(owned)
        return owned
    raise Unsupported("a transform this service does not process")


def _text(nodes: _NodeSet) -> bytes:
    node = nodes.element if nodes.element is not None else nodes.tree.getroot()
    return "".join(node.itertext()).encode("utf-8")
