"""A CMS SignedData taken apart into its encoded elements, and put back together.

Why not asn1crypto's object model for the whole structure: a Parallel signature adds a SignerInfo
to someone else's CMS, and their SignerInfos must stay byte-identical (their signatures, signature
time-stamps and archive time-stamps cover those bytes). asn1crypto re-encodes every descendant of
a value whose length was indefinite (BER), so we split the outer SEQUENCEs ourselves with
asn1crypto's parser and keep each element exactly as it came; only the wrappers we rebuild (and
the new signer) are encoded by us, in DER.

Untrusted input is parsed here and only here: anything that is not a well-formed SignedData
ContentInfo raises :class:`~rssp.documents.model.DocumentError` with a fixed text.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from asn1crypto import cms, core, parser

from rssp.documents.model import DocumentError

SIGNED_DATA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"  # DER of 1.2.840.113549.1.7.2
NOT_CMS = "the signature is not a CMS SignedData"
# SignedData fields by (class, tag): universal 16/17 are SEQUENCE/SET, context 0/1 the certificates/crls.
_UNIVERSAL, _CONTEXT = 0, 2


@dataclass(frozen=True)
class Element:
    """One encoded TLV: its identity and its exact bytes."""

    class_: int
    tag: int
    raw: bytes
    contents: bytes


@dataclass
class Envelope:
    """A SignedData as encoded elements (each a complete TLV, kept byte for byte).

    ``signer_infos`` are the SignerInfos already there (another party's, or none); ``parsed``
    holds read-only asn1crypto views of them, never re-encoded.
    """

    version: int
    digest_algorithms: list[bytes]
    encap: bytes
    certificates: list[bytes] = field(default_factory=list)
    crls: list[bytes] = field(default_factory=list)
    signer_infos: list[bytes] = field(default_factory=list)
    parsed: list[cms.SignerInfo] = field(default_factory=list)

    @property
    def encap_info(self) -> cms.EncapsulatedContentInfo:
        return cms.EncapsulatedContentInfo.load(self.encap)

    @property
    def econtent_type(self) -> bytes:
        """The encoded eContentType OID: the first input of an archive-time-stamp-v3 imprint."""
        return _children(parser.parse(self.encap)[4])[0].raw

    def add_certificates(self, encoded: list[bytes]) -> None:
        """Add (once each); kept in DER SET order, the order :meth:`dump` writes them in."""
        self.certificates = sorted(set(self.certificates) | set(encoded))

    def add_crls(self, encoded: list[bytes]) -> None:
        self.crls = sorted(set(self.crls) | set(encoded))

    def add_digest_algorithm(self, algorithm: bytes) -> None:
        oid = cms.DigestAlgorithm.load(algorithm)["algorithm"].dotted
        if all(cms.DigestAlgorithm.load(a)["algorithm"].dotted != oid for a in self.digest_algorithms):
            self.digest_algorithms.append(algorithm)

    def dump(self, new_signer: cms.SignerInfo | None = None) -> bytes:
        """The ContentInfo, DER wrappers around the kept elements (SETs sorted as DER wants)."""
        signer_infos = [*self.signer_infos, *([new_signer.dump()] if new_signer is not None else [])]
        body = [core.Integer(self._version(signer_infos)).dump(), _tlv(0x31, _set(self.digest_algorithms)),
                self.encap]
        if self.certificates:
            body.append(_tlv(0xA0, _set(self.certificates)))
        if self.crls:
            body.append(_tlv(0xA1, _set(self.crls)))
        body.append(_tlv(0x31, _set(signer_infos)))
        return _tlv(0x30, SIGNED_DATA_OID + _tlv(0xA0, _tlv(0x30, b"".join(body))))

    def _version(self, signer_infos: list[bytes]) -> int:
        """RFC 5652 §5.1, never lower than what was there: 'other' revocation data (OCSP) needs v5."""
        if any(c[0] == 0xA3 for c in self.certificates) or any(c[0] == 0xA1 for c in self.crls):
            needed = 5
        elif any(c[0] == 0xA2 for c in self.certificates):
            needed = 4
        elif (any(c[0] == 0xA1 for c in self.certificates) or self.encap_info["content_type"].native != "data"
              or any(cms.SignerInfo.load(s)["version"].native == "v3" for s in signer_infos)):
            needed = 3
        else:
            needed = 1
        return max(self.version, needed)


def split(encoded: bytes) -> Envelope:
    """Take a ContentInfo of type SignedData apart; DocumentError if it is anything else."""
    try:
        return _split(encoded)
    except DocumentError:
        raise
    except Exception as exc:  # asn1crypto raises many types on malformed input; all mean "not a CMS"
        raise DocumentError(NOT_CMS) from exc


def _split(encoded: bytes) -> Envelope:
    top = _one(encoded, _UNIVERSAL, 16)
    oid, wrapped = _expect(_children(top.contents), 2)
    if oid.raw != SIGNED_DATA_OID:
        raise DocumentError("the CMS is not SignedData")
    (signed_data,) = _expect(_children(_check(wrapped, _CONTEXT, 0).contents), 1)
    fields = _children(_check(signed_data, _UNIVERSAL, 16).contents)
    if len(fields) < 4:
        raise DocumentError(NOT_CMS)
    version, algorithms, encap, *optional, signer_infos = fields
    envelope = Envelope(version=int(core.Integer.load(_check(version, _UNIVERSAL, 2).raw).native),
                        digest_algorithms=[e.raw for e in _children(_check(algorithms, _UNIVERSAL, 17).contents)],
                        encap=_check(encap, _UNIVERSAL, 16).raw)
    for element in optional:
        if element.class_ != _CONTEXT or element.tag not in (0, 1):
            raise DocumentError(NOT_CMS)
        target = envelope.certificates if element.tag == 0 else envelope.crls
        target.extend(e.raw for e in _children(element.contents))
    envelope.signer_infos = [e.raw for e in _children(_check(signer_infos, _UNIVERSAL, 17).contents)]
    _load(envelope)
    return envelope


def _load(envelope: Envelope) -> None:
    """Parse now what the engine reads later, so that malformed input fails here, as DocumentError."""
    seen: list[object] = [envelope.encap_info.native, envelope.econtent_type]
    seen += [cms.DigestAlgorithm.load(a)["algorithm"].dotted for a in envelope.digest_algorithms]
    for raw in envelope.signer_infos:
        signer_info = cms.SignerInfo.load(raw)
        seen += [signer_info["version"].native, signer_info["digest_algorithm"]["algorithm"].dotted,
                 signer_info["signed_attrs"].native, attribute_types(signer_info, "unsigned_attrs")]
        envelope.parsed.append(signer_info)


def attribute_types(signer_info: cms.SignerInfo, field_name: str) -> list[str]:
    """Dotted OIDs of a SignerInfo's signed or unsigned attributes (values left unparsed)."""
    attrs = signer_info[field_name]
    return [] if isinstance(attrs, core.Void) else [a["type"].dotted for a in attrs]


def _children(contents: bytes) -> list[Element]:
    """The TLVs one after another in ``contents`` (BER indefinite lengths included, as they came)."""
    out, rest = [], contents
    while rest:
        length = parser.peek(rest)
        out.append(_one(rest[:length]))
        rest = rest[length:]
    return out


def _one(raw: bytes, class_: int | None = None, tag: int | None = None) -> Element:
    parsed_class, _method, parsed_tag, _header, contents, _trailer = parser.parse(raw, strict=True)
    element = Element(parsed_class, parsed_tag, raw, contents)
    return element if class_ is None else _check(element, class_, tag)


def _check(element: Element, class_: int, tag: int | None) -> Element:
    if element.class_ != class_ or element.tag != tag:
        raise DocumentError(NOT_CMS)
    return element


def _expect(elements: list[Element], count: int) -> list[Element]:
    if len(elements) != count:
        raise DocumentError(NOT_CMS)
    return elements


def _set(elements: list[bytes]) -> bytes:
    return b"".join(sorted(elements))


def _tlv(tag: int, contents: bytes) -> bytes:
    length = len(contents)
    if length < 0x80:
        return bytes([tag, length]) + contents
    size = length.to_bytes((length.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + contents
