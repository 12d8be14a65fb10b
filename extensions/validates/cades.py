"""CAdES / CMS: attached signatures, and detached ones with the document or its digests.

pyHanko's EN 319 102-1 validation with time (``ades_with_time_validation``; the basic
process when there is no signature timestamp) checks the signature, the signer's path and
revocation, and the signature timestamp as proof of existence (a signer revoked after a
trusted signature timestamp passes). For a detached
signature the message digest to check is the client's document hashed with the signer's
digest algorithm, or one of the digests the client sent (``documentDigests``), which must
use that algorithm.

The level is read from the unsigned attributes: a signature timestamp makes B-T, certificate
and revocation values make B-LT, an archive timestamp (v3, ETSI EN 319 122-1) makes B-LTA.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass

from asn1crypto import cms
from pyhanko.sign.validation.ades import ades_basic_validation, ades_with_time_validation

from extensions.validates import indications
from extensions.validates.errors import BadDocument
from extensions.validates.outcome import B_B, B_LT, B_LTA, B_T, SignatureOutcome, timestamp_of
from extensions.validates.policy import Request

SIGNATURE_TIMESTAMP = "1.2.840.113549.1.9.16.2.14"
CERTIFICATE_VALUES = "1.2.840.113549.1.9.16.2.23"
REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.24"
ARCHIVE_TIMESTAMP_V3 = "0.4.0.1733.2.4"
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
    """Strict DER parse of a CMS ContentInfo holding SignedData with exactly one signer."""
    try:
        info = cms.ContentInfo.load(data, strict=True)
        if info["content_type"].native != "signed_data":
            raise BadDocument("not a CMS SignedData")
        signed = info["content"]
        signer_infos = signed["signer_infos"]
        signer_infos[0]["signature"].native  # noqa: B018 - force the lazy parse inside the try
        signed["encap_content_info"]["content"].native  # noqa: B018
        if signed["certificates"]:
            [c.chosen.native for c in signed["certificates"]]  # noqa: B018
    except BadDocument:
        raise
    except Exception as exc:  # noqa: BLE001 - untrusted input: any parse failure is a bad signature
        raise BadDocument(f"not a readable CMS signature: {type(exc).__name__}") from None
    if len(signer_infos) != 1:
        raise BadDocument("only CMS signatures with exactly one signer are supported")
    return signed


def _attr_oids(signer_info: cms.SignerInfo) -> set[str]:
    unsigned = signer_info["unsigned_attrs"]
    return {a["type"].dotted for a in unsigned} if unsigned else set()


def level_of(signer_info: cms.SignerInfo) -> str:
    oids = _attr_oids(signer_info)
    if ARCHIVE_TIMESTAMP_V3 in oids:
        return B_LTA
    if {CERTIFICATE_VALUES, REVOCATION_VALUES} <= oids:
        return B_LT
    return B_T if SIGNATURE_TIMESTAMP in oids else B_B


def _raw_digest(signed: cms.SignedData, detached: Detached | None) -> bytes | None:
    if detached is None:
        if signed["encap_content_info"]["content"].native is None:
            raise BadDocument("the signature is detached: send the document or its digests")
        return None
    if signed["encap_content_info"]["content"].native is not None:
        raise BadDocument("the signature is attached: send it as document")
    signer_info = signed["signer_infos"][0]
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


async def validate_cms(req: Request, data: bytes, detached: Detached | None) -> list[SignatureOutcome]:
    signed = load_signed_data(data)
    raw_digest = _raw_digest(signed, detached)
    signer_info = signed["signer_infos"][0]
    # EN 319 102-1: with a signature timestamp, the process for signatures with time; else the basic one
    process = ades_with_time_validation if SIGNATURE_TIMESTAMP in _attr_oids(signer_info) else ades_basic_validation
    result = await process(signed, req.signature_spec(), timing_info=req.timing, raw_digest=raw_digest)
    indication = indications.from_ades(result.ades_subindic, fetch_failed=req.fetch_failed)
    stamps = [t for t in [timestamp_of("signature", getattr(result.api_status, "timestamp_validity", None))] if t]
    form = "CAdES-detached" if detached is not None else "CAdES-attached"
    return [SignatureOutcome("signature-1", form, level_of(signer_info), indication, result, stamps,
                             report_source=(signed, raw_digest))]
