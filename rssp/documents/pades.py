"""PAdES baseline signatures (ETSI EN 319 142-1) for ``signatures/signDoc``, on pyHanko.

``sign_pdf`` signs a whole PDF in an incremental update (earlier revisions and signatures are left
byte for byte as they were); ``sign_pdf_digest`` returns the CMS for a ``/ByteRange`` digest the
client computed over a document it prepared itself.

The signature is the PAdES baseline form: subfilter ``ETSI.CAdES.detached``, signed attributes
content-type, message-digest and signing-certificate-v2, no signing-time attribute (the time is
the dictionary's ``/M``). Levels:

- **B-B**: that signature;
- **B-T**: plus a signature timestamp (unsigned attribute) from ``tools.timestamper``;
- **B-LT**: plus, in a revision after the signature, a DSS with the chains of the signer and of
  the TSA, and their OCSP responses and CRLs, fetched live through ``tools.validation_context``
  (no VRI entries: deprecated in the current PAdES baseline, and validators do not need them);
- **B-LTA**: B-LT plus a document timestamp covering that DSS (DSS and timestamp in one
  revision). Validation data for earlier document timestamps of the input is not fetched (their
  certificates come from the document: see :mod:`rssp.documents.revinfo`); when they come from the
  same TSA, that TSA's data is in the DSS anyway.

Envelopes: ``Certification`` makes a certification (DocMDP) signature with ``/P 2`` (form filling
and further signatures allowed: ``/P 1`` would forbid even the DSS a B-LT needs); ``Revision`` an
approval signature. A certification on a document that is already signed, and any signature on a
document whose DocMDP says ``/P 1``, are refused (:mod:`rssp.documents.pdf_input`).

The steps of pyHanko's ``PdfSigner.async_sign_pdf`` are run here one by one so that the
revocation data is fetched and checked complete (:mod:`rssp.documents.revinfo`) *before* the HSM
is asked to sign: a responder that is down costs the user no signature. ``tools.signer`` produces
exactly one real signature value per call (pyHanko also calls it once with ``dry_run=True`` to size
the placeholder; a signer must not touch the HSM then). Errors: the document's problems are
:class:`DocumentError` with fixed texts; a TSA or responder that fails is
:class:`UpstreamUnavailable` (:mod:`rssp.documents.timestamps`); the signer's own exceptions pass
through unchanged.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator
from contextlib import aclosing, asynccontextmanager, contextmanager
from io import BytesIO
from typing import Any

from pyhanko.sign.fields import MDPPerm, SigSeedSubFilter
from pyhanko.sign.general import SigningError
from pyhanko.sign.signers import PdfSignatureMetadata, PdfSigner
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.signers.pdf_signer import (
    DSSContentSettings,
    PdfSigningSession,
    PreSignValidationStatus,
    TimestampDSSContentSettings,
)
from pyhanko_certvalidator import ValidationContext

from rssp.documents import revinfo
from rssp.documents.model import (
    LEVELS,
    DocumentError,
    DocumentOptions,
    SignedOutput,
    SigningTools,
    UpstreamUnavailable,
    ValidationInfo,
)
from rssp.documents.pdf_input import BROKEN, PdfToSign, open_for_signing
from rssp.documents.timestamps import GuardedTimeStamper
from rssp.hash_algorithms import HASHES, SIGNING_HASHES

ENVELOPES = {"Certification": True, "Revision": False}  # envelope -> certify
DIGESTS: dict[str, int] = {name: HASHES[name].size for name in SIGNING_HASHES}
SIGNED_PROPS = {"reason": "reason", "location": "location", "contactinfo": "contact_info", "name": "name"}
MAX_PROP_LENGTH = 1000

BAD_ENVELOPE = "Invalid parameter signed_envelope_property: PAdES takes Certification or Revision"
BAD_LEVEL = "Invalid parameter conformance_level"
BAD_DIGEST = "Unsupported digest algorithm for PAdES (sha256, sha384 or sha512)"
DIGEST_LENGTH = "The document digest does not have the digest algorithm's length"
LTA_NEEDS_DOCUMENT = "AdES-B-LTA needs the whole document for PAdES"
PROPS_NEED_DOCUMENT = ("Invalid parameter signed_props: with a PAdES document digest the client writes "
                       "the signature dictionary")
FIELD_CONSTRAINTS = "The signature field's constraints (seed values or lock) do not allow this signature"
SEED_TIMESTAMP = "The signature field's seed values require a timestamp: ask for AdES-B-T or above"

# B-LT: the DSS goes in a revision of its own after the signature, even when an earlier DSS already
# holds the same data, so the document shows validation data added after this signature.
DSS_SETTINGS = DSSContentSettings(include_vri=False, skip_if_unneeded=False,
                                  next_ts_settings=TimestampDSSContentSettings(include_vri=False))


async def sign_pdf(pdf: bytes, opts: DocumentOptions, tools: SigningTools) -> SignedOutput:
    """Sign the whole PDF ``pdf`` at ``opts.level`` as ``opts.envelope``; ``document`` is set."""
    certify, md = _envelope(opts.envelope), _digest_algorithm(opts.digest_algorithm)
    props = pdf_signed_props(opts.signed_props)
    _require_tools(opts.level, tools)
    target = open_for_signing(pdf, certify=certify, field_name=opts.field_name)
    stamper = _stamper(opts.level, tools)
    async with _fetching_context(opts.level, tools) as vc:
        meta = PdfSignatureMetadata(
            field_name=target.field_name, md_algorithm=md, subfilter=SigSeedSubFilter.PADES, certify=certify,
            docmdp_permissions=MDPPerm.FILL_FORMS, embed_validation_info=vc is not None,
            use_pades_lta=opts.level == "B-LTA", validation_context=vc, dss_settings=DSS_SETTINGS,
            reason=props.get("reason"), location=props.get("location"), contact_info=props.get("contact_info"),
            name=props.get("name"))  # SIGNED_PROPS's values; None is the field's default
        session = _start_session(PdfSigner(meta, tools.signer, timestamper=stamper), target)
        status = None
        if vc is not None:  # pyHanko's pre-signing check, with the completeness check added
            paths = await revinfo.gather(tools.signer, stamper, vc)
            status = PreSignValidationStatus(signer_path=paths[0], validation_paths=paths,
                                             ts_validation_paths=paths[1:], ocsps_to_embed=vc.ocsps,
                                             crls_to_embed=vc.crls)
        document = await _sign_session(session, status, vc)
        info = revinfo.collected(status.validation_paths, vc) if status is not None and vc else ValidationInfo()
    return SignedOutput(document=document, validation_info=info)


async def sign_pdf_digest(digest: bytes, opts: DocumentOptions, tools: SigningTools) -> SignedOutput:
    """The PAdES CMS for a ``/ByteRange`` digest; ``signature`` is set (and ``validation_info`` at B-LT)."""
    if opts.level == "B-LTA":
        raise DocumentError(LTA_NEEDS_DOCUMENT)
    _envelope(opts.envelope)  # the client's document decides what the envelope is; the CMS is the same
    md = _digest_algorithm(opts.digest_algorithm)
    if opts.signed_props:
        raise DocumentError(PROPS_NEED_DOCUMENT)
    if len(digest) != DIGESTS[md]:
        raise DocumentError(DIGEST_LENGTH)
    _require_tools(opts.level, tools)
    stamper = _stamper(opts.level, tools)
    info = ValidationInfo()
    async with _fetching_context(opts.level, tools) as vc:
        if stamper is not None:  # a dead TSA is found before the HSM signs (the PDF form sizes with it too)
            await stamper.async_dummy_response(md)
        paths = await revinfo.gather(tools.signer, stamper, vc) if vc is not None else []
        signed = await tools.signer.async_sign(digest, md, use_pades=True, timestamper=stamper,
                                               signed_attr_settings=PdfCMSSignedAttributes())
        if vc is not None:
            paths += await revinfo.cover_tokens(stamper.tokens if stamper else [], paths, vc)
            info = revinfo.collected(paths, vc)
    return SignedOutput(signature=signed.dump(), validation_info=info)


def _start_session(signer: PdfSigner, target: PdfToSign) -> PdfSigningSession:
    """pyHanko's field set-up; a field whose seed values would make pyHanko call a TSA of the
    document's choosing (a URL from untrusted input) is refused instead."""
    with _input_errors():
        session = signer.init_signing_session(target.writer)
    if session.timestamper is not signer.default_timestamper:
        raise DocumentError(SEED_TIMESTAMP)
    return session


async def _sign_session(session: PdfSigningSession, status: PreSignValidationStatus | None,
                        vc: ValidationContext | None) -> bytes:
    """pyHanko's signing steps after the pre-signing check: placeholder, digest, signature, DSS/LTA."""
    reserved = await session.estimate_signature_container_size(status)  # signer dry run, TSA dummy
    with _input_errors():
        tbs = session.prepare_tbs_document(validation_info=status, bytes_reserved=reserved)
        buffer = BytesIO()
        prepared, output = tbs.digest_tbs_document(output=buffer)
    post = await tbs.perform_signature(prepared.document_digest,
                                       PdfCMSSignedAttributes(signing_time=session.system_time))
    if status is not None and vc is not None and isinstance(session.timestamper, GuardedTimeStamper):
        # the DSS written next takes its paths from here: add the TSA that really answered
        status.validation_paths.extend(await revinfo.cover_tokens(session.timestamper.tokens,
                                                                  status.validation_paths, vc))
    with _input_errors():
        await post.post_signature_processing(output)
    return buffer.getvalue()


def pdf_signed_props(props: tuple[tuple[str, str | None], ...]) -> dict[str, str]:
    """CSC ``signed_props`` -> signature dictionary entries (/Reason, /Location, /ContactInfo, /Name).

    Names match case-insensitively; anything else is refused rather than silently dropped: the
    client asked for it to be signed.
    """
    out: dict[str, str] = {}
    for name, value in props:
        key = SIGNED_PROPS.get(name.lower())
        shown = name if name.isascii() and name.isprintable() and len(name) <= 64 else "?"
        if key is None:
            raise DocumentError(f"Invalid parameter signed_props: unsupported attribute {shown}")
        if key in out:
            raise DocumentError(f"Invalid parameter signed_props: attribute {shown} given twice")
        if not value or len(value) > MAX_PROP_LENGTH:
            raise DocumentError(f"Invalid parameter signed_props: attribute {shown} needs a value "
                                f"of 1 to {MAX_PROP_LENGTH} characters")
        out[key] = value
    return out


def _envelope(envelope: str) -> bool:
    try:
        return ENVELOPES[envelope]
    except KeyError:
        raise DocumentError(BAD_ENVELOPE) from None


def _digest_algorithm(name: str) -> str:
    if name.lower() not in DIGESTS:
        raise DocumentError(BAD_DIGEST)
    return name.lower()


def _require_tools(level: str, tools: SigningTools) -> None:
    """The handler builds the tools from the level; a missing one is its bug, not the client's."""
    if level not in LEVELS:
        raise DocumentError(BAD_LEVEL)
    if level != "B-B" and tools.timestamper is None:
        raise ValueError(f"PAdES {level} needs tools.timestamper")
    if level in ("B-LT", "B-LTA") and tools.validation_context is None:
        raise ValueError(f"PAdES {level} needs tools.validation_context")


def _stamper(level: str, tools: SigningTools) -> GuardedTimeStamper | None:
    if level == "B-B" or tools.timestamper is None:
        return None
    return GuardedTimeStamper(tools.timestamper)


@asynccontextmanager
async def _fetching_context(level: str, tools: SigningTools) -> AsyncIterator[ValidationContext | None]:
    """A fresh validation context for B-LT/B-LTA, its own HTTP session (if any) closed afterwards."""
    if level not in ("B-LT", "B-LTA") or tools.validation_context is None:
        yield None
        return
    async with aclosing(tools.validation_context()) as vc:
        yield vc


@contextmanager
def _input_errors() -> Iterator[Any]:
    """Steps that read or write the document and call neither the signer nor a TSA: failures are the PDF's."""
    try:
        yield
    except (DocumentError, UpstreamUnavailable):
        raise
    except SigningError:  # pyHanko's checks of the field's /SV seed values and /Lock
        raise DocumentError(FIELD_CONSTRAINTS) from None
    except Exception:  # noqa: BLE001 - untrusted input: a failure while handling it is a broken document
        raise DocumentError(BROKEN) from None
