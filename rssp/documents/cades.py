"""The CAdES engine of signatures/signDoc: CMS signatures at ETSI baseline levels B-B to B-LTA
(EN 319 122-1), attached, detached, over a client's digest, or added in parallel to an existing CMS.

pyHanko builds the signer's part (B-B signed attributes content-type, message-digest,
signing-time, signing-certificate-v2, plus the accepted signed_props; one call to the signer) and
the signature time-stamp (B-T). The rest is ours because pyHanko has no CAdES long-term form:
B-LT validation data in SignedData.certificates / SignedData.crls (:mod:`.cades_ltv`, which says
why there and not in certificate-values / revocation-values attributes) and the B-LTA
archive-time-stamp-v3 (:mod:`.archive_timestamp`). The SignedData itself is assembled from its
encoded parts (:mod:`.cades_envelope`) so that another party's SignerInfos stay byte-identical.

Order matters for "nothing half-made, nothing wasted": at B-LT and B-LTA the signer's chain and its
revocation data are fetched before the signer is called (a responder down costs no signature);
then the signature, its time-stamp, the TSA's own validation data, and last the archive time-stamp.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from contextlib import AbstractAsyncContextManager, contextmanager, nullcontext
from dataclasses import replace
from typing import Any

from asn1crypto import cms, core
from pyhanko.sign.attributes import TSTProvider
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import TimestampRequestError
from pyhanko_certvalidator import ValidationContext

from rssp.documents.archive_timestamp import add_unsigned, archive_attribute, hash_index, message_imprint
from rssp.documents.cades_envelope import Envelope, attribute_types, split
from rssp.documents.cades_ltv import Collected, collect, collect_timestamp, session
from rssp.documents.cades_props import signed_attributes
from rssp.documents.model import (
    DocumentError,
    DocumentOptions,
    SignedOutput,
    SigningTools,
    UpstreamUnavailable,
    ValidationInfo,
)
from rssp.hash_algorithms import SIGNING_HASHES

RANK = {"B-B": 0, "B-T": 1, "B-LT": 2, "B-LTA": 3}
DIGESTS = SIGNING_HASHES
TSA_FAILED = "the time-stamping authority failed"
# Archive time-stamps older than v3 (ATS, ATSv2) and the long-term-validation attribute cover
# SignedData.certificates and .crls as a whole: a new signer (its certificate, its validation
# data) would break them, and EN 319 122-1 5.5.3 then forbids touching those fields.
WHOLESALE_ARCHIVE_TIMESTAMPS = {"1.2.840.113549.1.9.16.2.27", "1.2.840.113549.1.9.16.2.48", "0.4.0.1733.2.2"}


async def sign_data(data: bytes, opts: DocumentOptions, tools: SigningTools) -> SignedOutput:
    """Sign ``data``: Attached -> ``document`` (the CMS with the content), Detached -> ``signature``."""
    _check_options(opts, ("Attached", "Detached"), tools)
    attached = opts.envelope == "Attached"
    encap = {"content_type": "data", "content": data} if attached else None
    encoded, info = await _Job(opts, tools, _digest(opts.digest_algorithm, data)).run(encap, None)
    return SignedOutput(document=encoded, validation_info=info) if attached else \
        SignedOutput(signature=encoded, validation_info=info)


async def sign_digest(digest: bytes, opts: DocumentOptions, tools: SigningTools) -> SignedOutput:
    """A detached CMS over content the client hashed with ``opts.digest_algorithm`` -> ``signature``."""
    _check_options(opts, ("Detached",), tools)
    if len(digest) != hashlib.new(opts.digest_algorithm).digest_size:
        raise DocumentError("the digest does not have the length of the digest algorithm")
    encoded, info = await _Job(opts, tools, digest).run(None, None)
    return SignedOutput(signature=encoded, validation_info=info)


async def add_parallel(existing_cms: bytes, data: bytes | None, opts: DocumentOptions,
                       tools: SigningTools) -> SignedOutput:
    """Add our SignerInfo to the SignedData ``existing_cms`` (Parallel), its SignerInfos untouched.

    The content is the CMS's own (``data``, if given, must equal it) or, for a detached CMS, ``data``.
    An attached CMS comes back as ``document``, a detached one as ``signature``.
    """
    _check_options(opts, ("Parallel",), tools)
    base, content, attached = _parallel_input(existing_cms, data)
    encap = {"content_type": base.encap_info["content_type"].native}
    job = _Job(opts, tools, _digest(opts.digest_algorithm, content))
    encoded, info = await job.run(encap, base)
    return SignedOutput(document=encoded, validation_info=info) if attached else \
        SignedOutput(signature=encoded, validation_info=info)


def check_parallel(existing_cms: bytes, data: bytes | None) -> None:
    """Refuse what :func:`add_parallel` would refuse for its input, without signing (the preflight)."""
    _parallel_input(existing_cms, data)


def _parallel_input(existing_cms: bytes, data: bytes | None) -> tuple[Envelope, bytes, bool]:
    base = split(existing_cms)
    content, attached = _content(base, data)
    _check_existing(base, content)
    return base, content, attached


class _Job:
    """One output: the new SignerInfo and the SignedData it goes into, raised level by level."""

    def __init__(self, opts: DocumentOptions, tools: SigningTools, digest: bytes) -> None:
        self.opts, self.tools, self.digest = opts, tools, digest
        self.algorithm = opts.digest_algorithm
        self.rank = RANK[opts.level]
        self.collected = Collected()

    async def run(self, encap: dict[str, Any] | None, base: Envelope | None) -> tuple[bytes, ValidationInfo]:
        context: AbstractAsyncContextManager[ValidationContext | None] = \
            session(self.tools.validation_context) if self.rank >= RANK["B-LT"] else nullcontext()
        async with context as vc:
            if vc is not None:  # before signing: a responder that is down costs no signature
                signer = self.tools.signer
                await collect(vc, signer.signing_cert, list(signer.cert_registry or ()), self.collected)
            envelope, signer_info = await self._sign(encap, base)
            if self.rank >= RANK["B-T"]:
                await self._signature_timestamp(signer_info, vc)
            if vc is not None:
                self._add_validation_data(envelope)
            if self.rank >= RANK["B-LTA"]:
                await self._archive_timestamp(envelope, signer_info, vc)
        info = self.collected.validation_info() if vc is not None else ValidationInfo()
        return envelope.dump(signer_info), info

    async def _sign(self, encap: dict[str, Any] | None, base: Envelope | None) -> tuple[Envelope, cms.SignerInfo]:
        """The one call to the signer; pyHanko formats the B-B signed attributes around it."""
        signed = await self.tools.signer.async_sign(
            self.digest, self.algorithm, use_pades=True, is_pdf_sig=False, encap_content_info=encap,
            signed_attr_settings=signed_attributes(self.opts.signed_props))
        fresh = split(signed.dump())
        envelope = base if base is not None else replace(fresh, signer_infos=[], parsed=[])
        envelope.add_certificates(fresh.certificates)
        for algorithm in fresh.digest_algorithms:
            envelope.add_digest_algorithm(algorithm)
        return envelope, fresh.parsed[0]

    async def _signature_timestamp(self, signer_info: cms.SignerInfo, vc: ValidationContext | None) -> None:
        """B-T: signature-time-stamp over the signature value (EN 319 122-1 5.3)."""
        stamper = _timestamper(self.tools)
        with _tsa_failure():
            attribute = await TSTProvider(self.algorithm, signer_info["signature"].native, stamper).get_attribute()
        if attribute is None:  # pyHanko's provider gives one whenever its time-stamper answers
            raise UpstreamUnavailable("the time-stamping authority gave no time-stamp")
        add_unsigned(signer_info, attribute)
        if vc is not None:
            await collect_timestamp(vc, attribute["values"][0], self.collected)

    def _add_validation_data(self, envelope: Envelope) -> None:
        envelope.add_certificates(self.collected.certificate_choices())
        envelope.add_crls(self.collected.revocation_choices())

    async def _archive_timestamp(self, envelope: Envelope, signer_info: cms.SignerInfo,
                                 vc: ValidationContext | None) -> None:
        """B-LTA: archive-time-stamp-v3 over everything so far; then the archive TSA's own
        validation data, if it is another TSA (ats-hash-index-v3 lets it come after, 5.5.2 note 5)."""
        index = hash_index(envelope, signer_info, self.algorithm)
        imprint = message_imprint(envelope, signer_info, self.digest, index, self.algorithm)
        stamper = _timestamper(self.tools)
        with _tsa_failure():
            attribute = archive_attribute(await stamper.async_timestamp(imprint, self.algorithm), index)
        add_unsigned(signer_info, attribute)
        if vc is not None:
            await collect_timestamp(vc, attribute["values"][0], self.collected)
            self._add_validation_data(envelope)


def _check_options(opts: DocumentOptions, envelopes: tuple[str, ...], tools: SigningTools) -> None:
    if opts.level not in RANK:
        raise DocumentError("unsupported conformance level for CAdES")
    if opts.envelope not in envelopes:
        raise DocumentError("unsupported signed envelope property for this CAdES request")
    if opts.digest_algorithm not in DIGESTS:
        raise DocumentError("unsupported digest algorithm")
    signed_attributes(opts.signed_props)  # refuse bad signed_props before any upstream is asked
    if RANK[opts.level] >= RANK["B-T"]:
        _timestamper(tools)


def _timestamper(tools: SigningTools) -> TimeStamper:
    if tools.timestamper is None:
        raise UpstreamUnavailable("no time-stamping authority available")
    return tools.timestamper


@contextmanager
def _tsa_failure() -> Iterator[None]:
    """A TSA that fails, or answers something unusable, is an upstream failure."""
    try:
        yield
    except (DocumentError, UpstreamUnavailable):
        raise
    except (TimeoutError, TimestampRequestError, OSError, ValueError, KeyError, IndexError) as exc:
        raise UpstreamUnavailable(TSA_FAILED) from exc


def _digest(algorithm: str, data: bytes) -> bytes:
    return hashlib.new(algorithm, data).digest()


def _content(base: Envelope, data: bytes | None) -> tuple[bytes, bool]:
    """The signed content of an existing CMS and whether it is encapsulated."""
    econtent = base.encap_info["content"]
    if isinstance(econtent, core.Void) or econtent.native is None:
        if data is None:
            raise DocumentError("a detached CMS needs the signed document")
        return data, False
    embedded = bytes(econtent)
    if data is not None and data != embedded:
        raise DocumentError("the document is not the content of the CMS")
    return embedded, True


def _check_existing(base: Envelope, content: bytes) -> None:
    """Refuse what a parallel signature would break or contradict: wholesale archive time-stamps,
    and content that is not what the existing signers signed (one hash per algorithm, however
    many signers)."""
    digests: dict[str, bytes | None] = {}
    for signer_info in base.parsed:
        if set(attribute_types(signer_info, "unsigned_attrs")) & WHOLESALE_ARCHIVE_TIMESTAMPS:
            raise DocumentError("the CMS has an archive time-stamp that another signer would invalidate")
        signed = signer_info["signed_attrs"]
        claimed = [] if isinstance(signed, core.Void) else \
            [a["values"][0].native for a in signed if a["type"].native == "message_digest"]
        algorithm = signer_info["digest_algorithm"]["algorithm"].native
        if algorithm not in digests:
            digests[algorithm] = _digest(algorithm, content) if algorithm in hashlib.algorithms_available else None
        if claimed and digests[algorithm] is not None and claimed[0] != digests[algorithm]:
            raise DocumentError("the document does not match the existing signatures")
