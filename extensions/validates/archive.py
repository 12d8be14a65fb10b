"""CAdES B-LTA: verifying archive-time-stamp-v3 attributes (ETSI EN 319 122-1, 5.5.2 and 5.5.3).

The hashing is rssp's own signing engine's (:mod:`rssp.documents.archive_timestamp`, on the
SignedData taken apart byte for byte by :mod:`rssp.documents.cades_envelope`, so BER input
hashes as it was encoded): the message imprint is recomputed from the SignedData with the
ats-hash-index-v3 the time-stamp token carries, and every element that index lists (a
certificate, a CRL or OCSP response, an unsigned attribute value) must still be in the
SignedData — elements added later (another signer, a renewal's validation data) are allowed.
The token itself is then validated like any time-stamp (signature, TSA path to the TSA
anchors, revocation). A verified, trusted archive time-stamp is a proof of existence of the
signature at its time (:mod:`.cades` uses it).
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from datetime import datetime

from asn1crypto import cms, core
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko.sign.validation.policy_decl import LocalKnowledge

from extensions.validates import indications
from extensions.validates.outcome import Timestamp, timestamp_of
from extensions.validates.policy import tsa_context
from extensions.validates.request import Request
from rssp.documents.archive_timestamp import (
    ARCHIVE_TIME_STAMP_V3,
    ATS_HASH_INDEX_V3,
    OctetStrings,
    hash_index,
    message_imprint,
)
from rssp.documents.cades_envelope import Envelope, split
from rssp.documents.model import DocumentError


@dataclass(frozen=True)
class Archived:
    """The archive time-stamps of one signer: as reported, and the earliest trusted time (POE)."""

    stamps: list[Timestamp]
    poe: datetime | None


def _tokens(signer_info: cms.SignerInfo) -> list[cms.ContentInfo]:
    attrs = signer_info["unsigned_attrs"]
    return [cms.ContentInfo.load(value.dump()) for attr in (attrs or []) if attr["type"].dotted == ARCHIVE_TIME_STAMP_V3
            for value in attr["values"]]


ATS_HASH_INDEX = "0.4.0.1733.2.5"  # the index of ETSI TS 101 733 V2.2.1 (whole attributes hashed)


class _Anys(core.SequenceOf):
    _child_spec = core.Any


def _v1_lists(value: core.Asn1Value) -> dict[str, list[bytes]]:
    """TS 101 733's ATSHashIndex: its hashIndAlgorithm may be left out (DEFAULT sha256), so the
    three lists are the last three elements."""
    parts = list(_Anys.load(value.dump()))
    names = ("certificates_hash_index", "crls_hash_index", "unsigned_attrs_hash_index")
    return {name: list(OctetStrings.load(part.dump()).native) for name, part in zip(names, parts[-3:], strict=True)}


def _index(token: cms.ContentInfo) -> tuple[core.Asn1Value, bool] | None:
    """The token's hash index, and whether it is the v3 one (else TS 101 733's)."""
    attrs = token["content"]["signer_infos"][0]["unsigned_attrs"]
    found = [(a["type"].dotted, a["values"][0]) for a in (attrs or [])
             if a["type"].dotted in (ATS_HASH_INDEX_V3, ATS_HASH_INDEX)]
    if len(found) != 1:
        return None
    oid, value = found[0]
    return value, oid == ATS_HASH_INDEX_V3


def _covered(index: tuple[core.Asn1Value, bool], envelope: Envelope, signer_info: cms.SignerInfo,
             algorithm: str) -> bool:
    """Every element the token's index lists is still in the SignedData (EN 319 122-1, 5.5.2)."""
    value, v3 = index
    now = hash_index(envelope, signer_info, algorithm)
    if not v3:  # TS 101 733: each unsigned attribute hashed whole
        attrs = signer_info["unsigned_attrs"]
        now["unsigned_attr_values_hash_index"] = [hashlib.new(algorithm, a.dump()).digest() for a in (attrs or [])]
    names = ("certificates_hash_index", "crls_hash_index",
             "unsigned_attr_values_hash_index" if v3 else "unsigned_attrs_hash_index")
    listed = {name: value[name].native for name in names} if v3 else _v1_lists(value)
    for name, ours in zip(names, ("certificates_hash_index", "crls_hash_index", "unsigned_attr_values_hash_index"),
                          strict=True):
        if not {bytes(v) for v in listed[name]} <= {bytes(v) for v in now[ours].native}:
            return False
    return True


def _imprint(token: cms.ContentInfo, envelope: Envelope, position: int, content: bytes | None) -> bytes | None:
    """The message imprint the token must carry, or None if it cannot be computed (no index, no content)."""
    index = _index(token)
    tst_info = token["content"]["encap_content_info"]["content"].parsed
    algorithm = tst_info["message_imprint"]["hash_algorithm"]["algorithm"].native
    signer_info = envelope.parsed[position]
    if index is None or content is None or not _covered(index, envelope, signer_info, algorithm):
        return None
    digest = hashlib.new(algorithm, content).digest()
    return message_imprint(envelope, signer_info, digest, index[0], algorithm)


async def _one(req: Request, token: cms.ContentInfo, expected: bytes | None, known: LocalKnowledge) -> Timestamp:
    context = tsa_context(req, known)
    try:
        kwargs = await validate_tst_signed_data(token["content"], context, lambda _algo: expected or b"")
    except Exception:  # noqa: BLE001 - a broken time-stamp is reported, not fatal
        return Timestamp("archive", None, None, indications.TOTAL_FAILED)
    from pyhanko.sign.validation.status import TimestampSignatureStatus

    return timestamp_of("archive", TimestampSignatureStatus(**kwargs))


async def archive_timestamps(req: Request, data: bytes, position: int, signer_info: cms.SignerInfo,
                             content: bytes | None, known: LocalKnowledge) -> Archived:
    """Verify the archive-time-stamp-v3 attributes of the ``position``-th signer of the CMS ``data``.

    ``content`` is the signed content (attached, or the detached document), None when only
    digests were sent (the imprint cannot be recomputed: the time-stamp is then not intact);
    ``known`` the validation data the CMS carries (the tokens' TSA paths may need it).
    """
    tokens = _tokens(signer_info)
    if not tokens:
        return Archived([], None)
    try:
        envelope = split(data)
    except DocumentError:
        envelope = None
    stamps = []
    for token in tokens:
        if content is None:  # digests only: the imprint covers the content, which is not here
            stamps.append(Timestamp("archive", None, None, indications.INDETERMINATE))
            continue
        try:
            expected = _imprint(token, envelope, position, content) if envelope is not None else None
        except Exception:  # noqa: BLE001 - an unreadable index or token: not verified
            expected = None
        stamps.append(await _one(req, token, expected, known))
    trusted = [s.gen_time for s in stamps if s.indication == indications.TOTAL_PASSED and s.gen_time is not None]
    return Archived(stamps, min(trusted) if trusted else None)
