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

from asn1crypto import cms, ocsp
from pyhanko.sign.ades.report import AdESFailure
from pyhanko.sign.validation.ades import (
    _LTA_FURTHER_PROC,
    _ades_past_signature_validation,
    ades_basic_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.errors import SignatureValidationError
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko_certvalidator.ltv.poe import POEManager, POEType
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

from extensions.validates import indications
from extensions.validates.archive import archive_timestamps
from extensions.validates.errors import BadDocument
from extensions.validates.outcome import B_B, B_LT, B_LTA, B_T, SignatureOutcome, timestamp_of
from extensions.validates.policy import Request

SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
CERTIFICATE_VALUES = "1.2.840.113549.1.9.16.2.23"
REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.24"
ARCHIVE_TIMESTAMP_V3 = "0.4.0.1733.2.4"
OCSP_RESPONSE_RI = "1.3.6.1.5.5.7.16.2"  # RFC 5940 id-ri-ocsp-response
MAX_SIGNERS = 20
# digest algorithm OIDs a client may name in documentDigests, with hashlib's names
HASHES = {"2.16.840.1.101.3.4.2.1": "sha256", "2.16.840.1.101.3.4.2.2": "sha384",
          "2.16.840.1.101.3.4.2.3": "sha512", "2.16.840.1.101.3.4.2.8": "sha3_256",
          "2.16.840.1.101.3.4.2.9": "sha3_384", "2.16.840.1.101.3.4.2.10": "sha3_512"}


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
        signed["encap_content_info"]["content"].native  # noqa: B018
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


def known_data(signed: cms.SignedData) -> LocalKnowledge:
    """The validation data a CMS carries (EN 319 122-1 places, and the older attributes)."""
    certs = [c.chosen for c in signed["certificates"] or [] if c.name == "certificate"]
    crls, ocsps = [], []
    for choice in signed["crls"] or []:
        if choice.name == "crl":
            crls.append(choice.chosen)
        elif choice.chosen["other_rev_info_format"].dotted == OCSP_RESPONSE_RI:
            ocsps.append(ocsp.OCSPResponse.load(choice.chosen["other_rev_info"].dump()))
    for signer_info in signed["signer_infos"]:
        for attr in signer_info["unsigned_attrs"] or []:
            if attr["type"].dotted == REVOCATION_VALUES:
                values = attr["values"][0]
                crls += list(values["crl_vals"] or [])
                ocsps += [ocsp.OCSPResponse({"response_status": "successful", "response_bytes": {
                    "response_type": "basic_ocsp_response", "response": basic}}) for basic in values["ocsp_vals"] or []]
            elif attr["type"].dotted == CERTIFICATE_VALUES:
                certs += list(attr["values"][0])
    return LocalKnowledge(
        known_ocsps=[c for o in ocsps if _readable(o) for c in OCSPContainer.load_multi(o)],
        known_crls=[CRLContainer(crl_data=c) for c in crls if _readable(c)],
        known_certs=[c for c in certs if _readable(c)])


def _readable(value: Any) -> bool:
    """Parsed through (asn1crypto parses lazily): an unreadable item is left out, not fatal later."""
    try:
        value.native  # noqa: B018
    except Exception:  # noqa: BLE001 - untrusted input
        return False
    return True


def _known_safely(signed: cms.SignedData) -> LocalKnowledge:
    try:
        return known_data(signed)
    except Exception:  # noqa: BLE001 - unreadable embedded data is ignored: validation fetches or says so
        return LocalKnowledge()


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


def _content(signed: cms.SignedData, detached: Detached | None) -> bytes | None:
    """The signed content, when it is at hand (attached, or the detached document)."""
    if detached is not None:
        return detached.document
    content = signed["encap_content_info"]["content"]
    return bytes(content.native) if content is not None and content.native is not None else None


def _raw_digest(signed: cms.SignedData, signer_info: cms.SignerInfo, detached: Detached | None) -> bytes | None:
    if detached is None:
        if signed["encap_content_info"]["content"].native is None:
            raise BadDocument("the signature is detached: send the document or its digests")
        return None
    if signed["encap_content_info"]["content"].native is not None:
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


def single_signer(signed: cms.SignedData, signer_info: cms.SignerInfo) -> cms.SignedData:
    """The SignedData as pyHanko reads it for one signer: the same, with only that SignerInfo."""
    view = signed.copy()
    view["signer_infos"] = cms.SignerInfos([signer_info.copy()])
    return view


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


async def _signer(req: Request, data: bytes, signed: cms.SignedData, position: int, detached: Detached | None,
                  form: str) -> SignatureOutcome:
    signer_info = signed["signer_infos"][position]
    raw_digest = _raw_digest(signed, signer_info, detached)
    view = single_signer(signed, signer_info)
    spec = dataclasses.replace(req.signature_spec(), local_knowledge=_known_safely(signed))
    # EN 319 102-1: with a signature timestamp, the process for signatures with time; else the basic one
    process = ades_with_time_validation if SIGNATURE_TIMESTAMP in _attr_oids(signer_info) else ades_basic_validation
    name = f"signature-{position + 1}"
    try:
        result = await process(view, spec, timing_info=req.timing, raw_digest=raw_digest)
    except (ValueError, KeyError, TypeError, AttributeError, NotImplementedError):  # e.g. an unknown algorithm
        return SignatureOutcome(name, form, level_of(signer_info, signed),
                                indications.failed(AdESFailure.FORMAT_FAILURE))
    indication = indications.from_ades(result.ades_subindic, fetch_failed=req.fetch_failed)
    archived = await archive_timestamps(req, data, position, signer_info, _content(signed, detached))
    if archived.poe is not None and not indication.passed and result.ades_subindic in _LTA_FURTHER_PROC:
        sub = await _with_poe(req, view, spec, result, archived.poe)
        indication = indications.PASSED if sub is None else indications.from_ades(sub, fetch_failed=req.fetch_failed)
    stamps = [t for t in [timestamp_of("signature", getattr(result.api_status, "timestamp_validity", None))] if t]
    return SignatureOutcome(name, form, level_of(signer_info, signed), indication, result, stamps + archived.stamps,
                            report_source=(view, raw_digest))


async def validate_cms(req: Request, data: bytes, detached: Detached | None) -> list[SignatureOutcome]:
    signed = load_signed_data(data)
    form = "CAdES-detached" if detached is not None else "CAdES-attached"
    return [await _signer(req, data, signed, i, detached, form) for i in range(len(signed["signer_infos"]))]

