"""The XAdES engine of signatures/signDoc: XML signatures at ETSI EN 319 132-1 baseline levels B-B to B-LTA.

Envelopes (``signed_envelope_property``):

- ``Enveloped`` (default): the document is XML; the ``ds:Signature`` becomes the last child of its
  root element and signs the whole document (``URI=""``, enveloped-signature transform, exclusive
  C14N). A document that already carries a signature over the whole document is refused (a second
  enveloped signature would break it);
- ``Enveloping``: a new XML document whose root is the ``ds:Signature``; the content goes into a
  ``ds:Object``: as XML when it is acceptable XML, else Base64 (``Encoding`` base64, with the
  base64 transform on the reference);
- ``Detached``: a new XML document holding only the signature; its reference names the content
  by ``document-name`` (signed_props, default ``document``) and digests the bytes as sent, no
  transform. From ``documentDigests`` the client's digest is that reference's DigestValue: the
  same signature, made without the content.

Levels: B-B (signed properties, :mod:`.xades_props`); B-T (SignatureTimeStamp from the TSA pool);
B-LT (CertificateValues, RevocationValues: the signer's and the TSA's chains with OCSP responses
and CRLs fetched live, through the same helpers as CAdES, :mod:`.cades_ltv`); B-LTA
(``xades141:ArchiveTimeStamp``, the JIS X 5093 long-term form, over :mod:`.xades_archive`'s input;
then ``xades141:TimeStampValidationData`` if its TSA brought data not yet in).

Order, as for CAdES: at B-LT and B-LTA the signer's chain and revocation data are fetched before
the signer is called (a responder down costs no signature); the signer is called exactly once;
a failing TSA or responder afterwards yields nothing (UpstreamUnavailable), never half a signature.
"""

from __future__ import annotations

import base64
import hashlib
import re
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass

from lxml import etree
from pyhanko.sign.timestamps import TimeStamper
from pyhanko_certvalidator import ValidationContext

from rssp.documents.cades_ltv import Collected, collect, collect_timestamp, session
from rssp.documents.model import (
    DocumentError,
    DocumentOptions,
    SignedOutput,
    SigningTools,
    UpstreamUnavailable,
    ValidationInfo,
)
from rssp.documents.timestamps import GuardedTimeStamper
from rssp.documents.xades_archive import archive_input, signature_timestamp_input
from rssp.documents.xades_core import DIGESTS, Skeleton, Target, build, fill_digests, new_ids, sign_value
from rssp.documents.xades_props import Props, parse_props
from rssp.documents.xades_refs import IdIndex, ReferenceError_
from rssp.documents.xades_unsigned import (
    add_archive_timestamp,
    add_signature_timestamp,
    add_timestamp_validation_data,
    add_validation_values,
)
from rssp.documents.xades_xml import BASE64, ENVELOPED, EXC_C14N, ds, parse_xml

RANK = {"B-B": 0, "B-T": 1, "B-LT": 2, "B-LTA": 3}
ENVELOPES = ("Enveloped", "Enveloping", "Detached")
ALREADY_ENVELOPED = "The XML document already has a signature over the whole document, which an enveloped " \
                    "signature would invalidate (use Detached)"
IS_SIGNATURE = "The XML document is itself a signature (use Detached)"
LTA_NEEDS_DOCUMENT = "AdES-B-LTA needs the whole document for XAdES (the archive time-stamp covers the content)"
External = Callable[[str | None], bytes | None]
Embed = Callable[[etree._Element], None]
NEW_DECLARATION = b'<?xml version="1.0" encoding="UTF-8"?>'


def check_options(opts: DocumentOptions, envelopes: tuple[str, ...] = ENVELOPES) -> Props:
    """What the engine refuses for the options alone (also run by the preflight)."""
    if opts.level not in RANK:
        raise DocumentError("unsupported conformance level for XAdES")
    if opts.envelope not in envelopes:
        raise DocumentError("unsupported signed envelope property for this XAdES request")
    if opts.digest_algorithm not in DIGESTS:
        raise DocumentError("unsupported digest algorithm")
    return parse_props(opts.signed_props)


def check_enveloped(tree: etree._ElementTree) -> None:
    """Refuse a document an enveloped signature would break (see the module docstring)."""
    root = tree.getroot()
    if root.tag == ds("Signature"):
        raise DocumentError(IS_SIGNATURE)
    for signature in root.iter(ds("Signature")):
        for reference in signature.iterfind(f"{ds('SignedInfo')}/{ds('Reference')}"):
            if reference.get("URI") in ("", "#xpointer(/)"):
                raise DocumentError(ALREADY_ENVELOPED)


def check_digest_options(opts: DocumentOptions) -> Props:
    """A signature over a client's digest: Detached only, and not B-LTA (its archive time-stamp covers
    the content itself, EN 319 132-1 5.5.2.2, not a digest of it)."""
    props = check_options(opts, ("Detached",))
    if opts.level == "B-LTA":
        raise DocumentError(LTA_NEEDS_DOCUMENT)
    return props


def check_document(data: bytes, opts: DocumentOptions) -> None:
    """Preflight: the options, and an Enveloped document that can take the signature."""
    check_options(opts)
    if opts.envelope == "Enveloped":
        check_enveloped(parse_xml(data))


async def sign_xml(data: bytes, opts: DocumentOptions, tools: SigningTools) -> SignedOutput:
    """Sign ``data``: Enveloped and Enveloping -> ``document``; Detached -> ``signature``."""
    props = check_options(opts)
    job = _Job(opts, tools, props)
    if opts.envelope == "Enveloped":
        tree = parse_xml(data)
        check_enveloped(tree)
        declared = _declaration(data)
        ids = new_ids(IdIndex(tree.getroot()))
        targets = [Target("", (ENVELOPED, EXC_C14N), props.mime_type or "text/xml")]
        encoded, info = await job.run(targets, ids, tree.getroot(), None, lambda uri: None, declared)
        return SignedOutput(document=encoded, validation_info=info)
    if opts.envelope == "Enveloping":
        ids = new_ids()
        embed, mime_type, transforms = _enveloping(data)
        targets = [Target(f"#{ids['object']}", transforms, props.mime_type or mime_type)]
        encoded, info = await job.run(targets, ids, None, embed, lambda uri: None, NEW_DECLARATION)
        return SignedOutput(document=encoded, validation_info=info)
    targets = [Target(props.document_name, (), props.mime_type or _mime(data))]
    encoded, info = await job.run(targets, new_ids(), None, None,
                                  lambda uri: data if uri == props.document_name else None, NEW_DECLARATION)
    return SignedOutput(signature=encoded, validation_info=info)


async def sign_xml_digest(digest: bytes, opts: DocumentOptions, tools: SigningTools) -> SignedOutput:
    """A Detached signature over content the client hashed with ``opts.digest_algorithm`` -> ``signature``."""
    props = check_digest_options(opts)
    if len(digest) != hashlib.new(opts.digest_algorithm).digest_size:
        raise DocumentError("the digest does not have the length of the digest algorithm")
    targets = [Target(props.document_name, (), props.mime_type or "application/octet-stream", digest)]
    encoded, info = await _Job(opts, tools, props).run(targets, new_ids(), None, None, lambda uri: None,
                                                     NEW_DECLARATION)
    return SignedOutput(signature=encoded, validation_info=info)


def _mime(data: bytes) -> str:
    return "text/xml" if data.lstrip()[:1] == b"<" else "application/octet-stream"


def _enveloping(data: bytes) -> tuple[Embed, str, tuple[str, ...]]:
    """How the content goes into the ds:Object: as XML if it is acceptable XML, else as Base64."""
    try:
        content = parse_xml(data).getroot()
    except DocumentError:
        encoded = base64.b64encode(data).decode("ascii")

        def embed_base64(obj: etree._Element) -> None:
            obj.set("Encoding", BASE64)
            obj.text = encoded

        return embed_base64, "application/octet-stream", (BASE64,)

    def embed_xml(obj: etree._Element) -> None:
        obj.append(content)

    return embed_xml, "text/xml", (EXC_C14N,)


@dataclass
class _Job:
    """One output: the signature built, signed once, and raised to its level."""

    opts: DocumentOptions
    tools: SigningTools
    props: Props

    @property
    def rank(self) -> int:
        return RANK[self.opts.level]

    async def run(self, targets: list[Target], ids: dict[str, str], parent: etree._Element | None,
                  embed: Embed | None, external: External, declared: bytes | None) -> tuple[bytes, ValidationInfo]:
        """The serialised document and the validation data embedded (B-LT, B-LTA)."""
        collected = Collected()
        stamper = self._timestamper()
        async with self._context() as vc:
            if vc is not None:  # before signing: a responder that is down costs no signature
                signer = self.tools.signer
                await collect(vc, signer.signing_cert, list(signer.cert_registry or ()), collected)
            skeleton = build(parent, self.tools.signer, self.opts.digest_algorithm, self.props, targets, ids, embed)
            tree = skeleton.signature.getroottree()
            try:
                fill_digests(skeleton, tree, self.opts.digest_algorithm, external)
            except ReferenceError_ as exc:
                raise DocumentError(f"the document cannot be signed: {exc.reason}") from None
            await sign_value(skeleton, self.tools.signer, self.opts.digest_algorithm)
            if stamper is not None:
                await self._signature_timestamp(skeleton, stamper, vc, collected)
            if vc is not None:
                add_validation_values(skeleton.unsigned, collected.certificates, collected.crls, collected.ocsps)
            if self.rank >= RANK["B-LTA"]:
                if stamper is None:  # _timestamper gives one from B-T up, or raises this
                    raise UpstreamUnavailable("no time-stamping authority available")
                await self._archive_timestamp(skeleton, tree, stamper, vc, collected, external)
        _drop_empty(skeleton)
        info = collected.validation_info()
        return _serialise(tree, declared), info

    def _timestamper(self) -> TimeStamper | None:
        if self.rank < RANK["B-T"]:
            return None
        if self.tools.timestamper is None:
            raise UpstreamUnavailable("no time-stamping authority available")
        return GuardedTimeStamper(self.tools.timestamper)

    @asynccontextmanager
    async def _context(self) -> AsyncIterator[ValidationContext | None]:
        if self.rank < RANK["B-LT"]:
            yield None
            return
        async with session(self.tools.validation_context) as vc:
            yield vc

    async def _signature_timestamp(self, skeleton: Skeleton, stamper: TimeStamper, vc: ValidationContext | None,
                                   collected: Collected) -> None:
        algorithm = self.opts.digest_algorithm
        imprint = hashlib.new(algorithm, signature_timestamp_input(skeleton.signature, EXC_C14N)).digest()
        token = await stamper.async_timestamp(imprint, algorithm)
        add_signature_timestamp(skeleton.unsigned, skeleton.ids["ts"], token.dump())
        if vc is not None:
            await collect_timestamp(vc, token, collected)

    async def _archive_timestamp(self, skeleton: Skeleton, tree: etree._ElementTree, stamper: TimeStamper,
                                 vc: ValidationContext | None, collected: Collected, external: External) -> None:
        algorithm = self.opts.digest_algorithm
        covered = archive_input(skeleton.signature, tree, IdIndex(tree.getroot()), external, None, EXC_C14N)
        token = await stamper.async_timestamp(hashlib.new(algorithm, covered).digest(), algorithm)
        add_archive_timestamp(skeleton.unsigned, f"a{skeleton.ids['ts']}", token.dump())
        if vc is None:
            return
        before = (set(collected.certificates), set(collected.crls), set(collected.ocsps))
        await collect_timestamp(vc, token, collected)
        new = tuple([item for item in found if item not in seen]
                    for found, seen in zip((collected.certificates, collected.crls, collected.ocsps), before,
                                           strict=True))
        if any(new):
            add_timestamp_validation_data(skeleton.unsigned, f"v{skeleton.ids['ts']}", *new)


def _drop_empty(skeleton: Skeleton) -> None:
    """B-B has no unsigned property: leave out the empty UnsignedProperties."""
    if len(skeleton.unsigned) == 0:
        holder = skeleton.unsigned.getparent()
        holder.getparent().remove(holder)


def _declaration(data: bytes) -> bytes | None:
    """The document's own XML declaration (kept as it was written), if it has one."""
    found = re.match(rb"^(?:\xef\xbb\xbf)?\s*(<\?xml\s[^>]*\?>)", data)
    return found.group(1) if found else None


def _serialise(tree: etree._ElementTree, declaration: bytes | None) -> bytes:
    """The signed document: its declaration as given (a new document: UTF-8 with one), then the tree."""
    if declaration is None:
        whole: bytes = etree.tostring(tree, encoding="UTF-8", xml_declaration=False)
        return whole
    body: bytes = etree.tostring(tree, encoding=tree.docinfo.encoding or "UTF-8", xml_declaration=False)
    return declaration + b"\n" + body


