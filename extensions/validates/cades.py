"""CAdES / CMS: attached signatures, and detached ones with the document or its digests.

Every SignerInfo of the SignedData is a signature of its own (CAdES "parallel" signatures),
validated and reported in order (``signature-1``, ``signature-2``, ...). The CMS is read as BER
(indefinite lengths, as many producers write them); each signer is validated on a view of
the SignedData holding only its SignerInfo, which is what pyHanko's processes read.

pyHanko's EN 319 102-1 validation with time (``ades_with_time_validation``; the basic
process when there is no signature timestamp) checks the signature, the signer's path and
revocation, and the signature timestamp as proof of existence (a signer revoked after a
trusted signature timestamp passes). The validation data the CMS carries is local
knowledge: certificates and revocation data in ``SignedData.certificates`` / ``crls`` (where
EN 319 122-1 puts them at B-LT: CRLs, and OCSP responses as RFC 5940 id-ri-ocsp-response), and
the older certificate-values / revocation-values attributes. A verified archive time-stamp
(v3, :mod:`.archive`) is a further proof of existence: a signature whose certificate has
since expired or been revoked passes if the time-stamp predates that (pyHanko's past
signature validation with that POE). For a detached signature the message digest to check
is the client's document hashed with the signer's digest algorithm, or one of the digests
the client sent (``documentDigests``), which must use that algorithm.

The level: a signature timestamp makes B-T; B-T plus validation data (revocation data in
``SignedData.crls`` or the revocation-values attribute) makes B-LT; an archive time-stamp v3
makes B-LTA.
"""

from __future__ import annotations

import dataclasses
import hashlib
from dataclasses import dataclass
from typing import Any

from asn1crypto import cms, core
from pyhanko.sign.ades.report import AdESFailure
from pyhanko.sign.validation.ades import (
    _LTA_FURTHER_PROC,
    _ades_past_signature_validation,
)
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko_certvalidator.ltv.poe import POEManager, POEType

from extensions.validates import indications, processes
from extensions.validates.archive import archive_timestamps
from extensions.validates.cmsread import REVOCATION_VALUES, der_ordered, known_safely, single_signer
from extensions.validates.countersign import validate_counter_signatures
from extensions.validates.errors import BadDocument
from extensions.validates.outcome import B_B, B_LT, B_LTA, B_T, SignatureOutcome, timestamp_of
from extensions.validates.policy import signature_spec
from extensions.validates.request import Request
from rssp.hash_algorithms import CLIENT_DIGESTS, hash_oids

SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
ARCHIVE_TIMESTAMP_V3 = "0.4.0.1733.2.4"
MAX_SIGNERS = 20
DER_ORDER = "the signed attributes are not stored in DER order: verified over their DER encoding (RFC 5652 5.4)"
# digest algorithm OIDs a client may name in documentDigests, with hashlib's names
HASHES = hash_oids(CLIENT_DIGESTS)


@dataclass(frozen=True)
class Detached:
    """What a detached signature is checked against: the document, or its digests."""

    document: bytes | None = None
    digests: tuple[bytes, ...] = ()
    hash_oid: str | None = None


def load_signed_data(data: bytes) -> cms.SignedData:
    """A CMS ContentInfo holding SignedData (BER or DER) with at least one signer."""
    try:
        info = cms.ContentInfo.load(data)
        if info["content_type"].native != "signed_data":
            raise BadDocument("not a CMS SignedData")
        signed = info["content"]
        signer_infos = signed["signer_infos"]
        for signer_info in signer_infos:
            signer_info["signature"].native  # noqa: B018 - force the lazy parse inside the try
            signer_info["digest_algorithm"]["algorithm"].native  # noqa: B018
        econtent(signed)
        if signed["certificates"]:
            [c.chosen.native for c in signed["certificates"]]  # noqa: B018
    except BadDocument:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: any parse failure is a bad signature
        raise BadDocument(f"not a readable CMS signature: {type(exc).__name__}") from None
    if not 0 < len(signer_infos) <= MAX_SIGNERS:
        raise BadDocument(f"a CMS signature with 1 to {MAX_SIGNERS} signers is supported")
    return signed


def _attr_oids(signer_info: cms.SignerInfo) -> set[str]:
    unsigned = signer_info["unsigned_attrs"]
    return {a["type"].dotted for a in unsigned} if unsigned else set()


def level_of(signer_info: cms.SignerInfo, signed: cms.SignedData | None = None) -> str:
    oids = _attr_oids(signer_info)
    if ARCHIVE_TIMESTAMP_V3 in oids:
        return B_LTA
    if SIGNATURE_TIMESTAMP not in oids:
        return B_B
    has_crls = signed is not None and bool(signed["crls"])
    if REVOCATION_VALUES in oids or has_crls:
        return B_LT
    return B_T


def econtent(signed: cms.SignedData) -> bytes | None:
    """The encapsulated content's octets, None when detached. Never parsed by its eContentType (as
    pyHanko hashes it): a SignedData encapsulating content typed signedData that is not one is
    still a signature over those octets."""
    content = signed["encap_content_info"]["content"]
    return None if isinstance(content, core.Void) else bytes(content)


def _content(signed: cms.SignedData, detached: Detached | None) -> bytes | None:
    """The signed content, when it is at hand (attached, or the detached document)."""
    if detached is not None:
        return detached.document
    return econtent(signed)


def _raw_digest(signed: cms.SignedData, signer_info: cms.SignerInfo, detached: Detached | None) -> bytes | None:
    if detached is None:
        if econtent(signed) is None:
            raise BadDocument("the signature is detached: send the document or its digests")
        return None
    if econtent(signed) is not None:
        raise BadDocument("the signature is attached: send it as document")
    algo = signer_info["digest_algorithm"]["algorithm"]
    if detached.document is not None:
        try:
            return hashlib.new(algo.native, detached.document).digest()
        except (ValueError, TypeError):
            raise BadDocument("unsupported digest algorithm in the signature") from None
    if algo.dotted != detached.hash_oid:
        raise BadDocument("documentDigests do not use the signature's digest algorithm")
    attrs = signer_info["signed_attrs"]
    claimed = next((a["values"][0].native for a in attrs if a["type"].native == "message_digest"), None) \
        if attrs else None
    # the digest the signature covers, if the client holds it; otherwise any of them (it will not match)
    return next((d for d in detached.digests if d == claimed), detached.digests[0])


async def _with_poe(req: Request, view: cms.SignedData, spec: Any, result: Any, poe: Any) -> Any:
    """pyHanko's past signature validation with an archive time-stamp as proof of existence."""
    manager = POEManager()
    spec.local_knowledge.add_to_poe_manager(manager)
    manager.register(view["signer_infos"][0]["signature"].native, poe_type=POEType.VALIDATION, dt=poe)
    try:
        await _ades_past_signature_validation(signed_data=view, validation_spec=spec, poe_manager=manager,
                                              current_time_sub_indic=result.ades_subindic,
                                              init_control_time=req.timing.validation_time, is_timestamp=False)
    except SignatureValidationError as exc:
        return exc.ades_subindication or result.ades_subindic
    return None  # passed


def _process(req: Request, view: cms.SignedData, spec: Any, raw_digest: bytes | None, notes: list[str],
             with_time: bool) -> Any:
    return processes.validate(view, spec, req.timing, raw_digest, notes=notes, with_time=with_time)


async def _signer(req: Request, data: bytes, signed: cms.SignedData, position: int, detached: Detached | None,
                  form: str) -> SignatureOutcome:
    signer_info = signed["signer_infos"][position]
    raw_digest = _raw_digest(signed, signer_info, detached)
    view = single_signer(data, signed, position)
    spec = dataclasses.replace(signature_spec(req), local_knowledge=known_safely(signed))
    name = f"signature-{position + 1}"
    notes: list[str] = []
    try:
        result = await _process(req, view, spec, raw_digest, notes, SIGNATURE_TIMESTAMP in _attr_oids(signer_info))
        if result.ades_subindic == AdESFailure.SIG_CRYPTO_FAILURE and (der := der_ordered(data, position)):
            second = await _process(req, der, spec, raw_digest, notes, SIGNATURE_TIMESTAMP in _attr_oids(signer_info))
            if second.ades_subindic != AdESFailure.SIG_CRYPTO_FAILURE:
                view, result = der, second
                notes.append(DER_ORDER)
    except Exception as exc:  # noqa: BLE001 - this signer cannot be read or checked; the others still are
        return SignatureOutcome(name, form, level_of(signer_info, signed), req.unreadable(exc), notes=notes)
    indication = indications.from_ades(result.ades_subindic, fetch_failed=req.fetch_failed)
    archived = await archive_timestamps(req, data, position, signer_info, _content(signed, detached),
                                        spec.local_knowledge)
    if archived.poe is not None and not indication.passed and result.ades_subindic in _LTA_FURTHER_PROC:
        sub = await _with_poe(req, view, spec, result, archived.poe)
        indication = indications.PASSED if sub is None else indications.from_ades(sub, fetch_failed=req.fetch_failed)
    stamps = [t for t in [timestamp_of("signature", getattr(result.api_status, "timestamp_validity", None))] if t]
    return SignatureOutcome(name, form, level_of(signer_info, signed), indication, result, stamps + archived.stamps,
                            report_source=(view, raw_digest), notes=notes)


async def validate_cms(req: Request, data: bytes, detached: Detached | None) -> list[SignatureOutcome]:
    """Every SignerInfo, each followed by its counter-signatures (:mod:`.countersign`)."""
    signed = load_signed_data(data)
    known = known_safely(signed)
    req.carry(known)
    form = "CAdES-detached" if detached is not None else "CAdES-attached"
    out: list[SignatureOutcome] = []
    for i, signer_info in enumerate(signed["signer_infos"]):
        out.append(await _signer(req, data, signed, i, detached, form))
        out += await validate_counter_signatures(req, out[-1].signature_id, form, signer_info, known)
    return out

