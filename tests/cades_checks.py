"""Independent checks of the CAdES engine's outputs (tests/test_documents_cades.py).

Nothing here uses rssp's code: OpenSSL verifies and prints every CMS; pyHanko's own CMS validation
checks each signer (pyHanko validates one SignerInfo at a time, so a Parallel CMS is validated
signer by signer); and the archive-time-stamp-v3 imprint and ats-hash-index-v3 are recomputed from
the encoded bytes with a DER walk of our own, following ETSI EN 319 122-1 clauses 5.5.2 / 5.5.3.
"""

from __future__ import annotations

import hashlib
import subprocess
from dataclasses import dataclass
from pathlib import Path

from asn1crypto import algos, cms, core, parser
from pyhanko.sign.validation import async_validate_detached_cms
from pyhanko.sign.validation.generic_cms import (
    async_validate_cms_signature,
    collect_timing_info,
    validate_tst_signed_data,
)
from pyhanko.sign.validation.status import TimestampSignatureStatus
from pyhanko_certvalidator import ValidationContext

ATS_V3 = core.ObjectIdentifier("0.4.0.1733.2.4").dump()
ATS_INDEX_V3 = "0.4.0.19122.1.5"
CERT_VALUES, REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.23", "1.2.840.113549.1.9.16.2.24"
B_B_ATTRIBUTES = {"content_type", "message_digest", "signing_time", "signing_certificate_v2"}


# ------------------------------------------------------------------------------------ OpenSSL

def openssl_checks(workdir: Path, root: Path, encoded: bytes, content: bytes, attached: bool) -> None:
    """``openssl cms -cmsout -print`` parses it and ``openssl cms -verify`` verifies every signer."""
    path = workdir / "out.p7"
    path.write_bytes(encoded)
    printed = subprocess.run(["openssl", "cms", "-cmsout", "-print", "-inform", "DER", "-in", str(path)],
                             capture_output=True, check=False)
    assert printed.returncode == 0, printed.stderr
    verify = ["openssl", "cms", "-verify", "-inform", "DER", "-in", str(path), "-CAfile", str(root),
              "-purpose", "any", "-binary"]
    if not attached:
        (workdir / "content").write_bytes(content)
        verify += ["-content", str(workdir / "content")]
    verified = subprocess.run(verify, capture_output=True, check=False)
    assert verified.returncode == 0, verified.stderr
    assert verified.stdout == content


# ------------------------------------------------------------------------------------ pyHanko

def one_signer(signed_data: cms.SignedData, signer_info: cms.SignerInfo) -> cms.SignedData:
    """The same SignedData with only ``signer_info`` (pyHanko validates single-signer CMS)."""
    view = signed_data.untag()
    view["signer_infos"] = [cms.SignerInfo.load(signer_info.dump())]
    return view


async def validate_signer(signed_data: cms.SignedData, signer_info: cms.SignerInfo, content: bytes,
                          attached: bool, context: ValidationContext) -> None:
    """pyHanko: the signer is intact, valid and trusted, and so is its signature time-stamp (if any)."""
    view = one_signer(signed_data, signer_info)
    if attached:
        status = await async_validate_cms_signature(view, validation_context=context)
    else:
        status = await async_validate_detached_cms(content, view, signer_validation_context=context)
    assert status.intact and status.valid and status.trusted, status
    timing = await collect_timing_info(signer_info, ts_validation_context=context,
                                       raw_digest=lambda algorithm: hashlib.new(algorithm, content).digest())
    stamp = timing.get("timestamp_validity")
    assert stamp is None or (stamp.intact and stamp.valid and stamp.trusted), stamp


async def pyhanko_checks(signed_data: cms.SignedData, content: bytes, attached: bool,
                         context: ValidationContext) -> None:
    for signer_info in signed_data["signer_infos"]:
        await validate_signer(signed_data, signer_info, content, attached, context)


def embedded_context(signed_data: cms.SignedData, root) -> ValidationContext:
    """Only what the CMS carries: no fetching, revocation data required (hard-fail)."""
    ocsps = [c.chosen["other_rev_info"] for c in signed_data["crls"] if c.name == "other"]
    crls = [c.chosen for c in signed_data["crls"] if c.name == "crl"]
    return ValidationContext(trust_roots=[root], other_certs=[c.chosen for c in signed_data["certificates"]],
                             crls=crls, ocsps=ocsps, allow_fetching=False, revocation_mode="hard-fail")


async def check_long_term(signed_data: cms.SignedData, signer_info: cms.SignerInfo, content: bytes,
                          attached: bool, root) -> None:
    """B-LT: certificates and revocation data in SignedData suffice, for the signer and its TSA;
    certificate-values / revocation-values are absent (EN 319 122-1 B-LT cardinality 0)."""
    [attr] = [a for a in signer_info["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"]
    assert attr["values"][0]["content"]["certificates"]  # the TSA's certificate, validated below too
    await validate_signer(signed_data, signer_info, content, attached, embedded_context(signed_data, root))
    types = {a["type"].dotted for a in signer_info["unsigned_attrs"]}
    assert not types & {CERT_VALUES, REVOCATION_VALUES}


def check_signature_timestamp(signer_info: cms.SignerInfo, algorithm: str) -> None:
    """The signature time-stamp's imprint is the hash of the signature value (EN 319 122-1 5.3)."""
    [attr] = [a for a in signer_info["unsigned_attrs"] if a["type"].native == "signature_time_stamp_token"]
    tst_info = attr["values"][0]["content"]["encap_content_info"]["content"].parsed
    expected = hashlib.new(algorithm, signer_info["signature"].native).digest()
    assert tst_info["message_imprint"]["hashed_message"].native == expected


# ------------------------------------------------------------------- archive-time-stamp-v3

def tlvs(data: bytes) -> list[bytes]:
    """The encoded elements one after another in ``data``: header + contents + trailer each."""
    out = []
    while data:
        _class, _method, _tag, header, contents, trailer = parser.parse(data)
        size = len(header) + len(contents) + len(trailer)
        out.append(data[:size])
        data = data[size:]
    return out


def inner(element: bytes) -> bytes:
    return parser.parse(element)[4]


def der(tag: int, body: bytes) -> bytes:
    if len(body) < 128:
        return bytes([tag, len(body)]) + body
    n = (len(body).bit_length() + 7) // 8
    return bytes([tag, 0x80 + n]) + len(body).to_bytes(n, "big") + body


@dataclass
class Parts:
    """The SignedData of an output as encoded elements, walked here, not by the engine."""

    econtent_type: bytes
    certificates: list[bytes]
    crls: list[bytes]
    signer_infos: list[bytes]

    @classmethod
    def of(cls, encoded: bytes) -> Parts:
        (content_info,) = tlvs(encoded)
        _oid, explicit = tlvs(inner(content_info))
        (signed_data,) = tlvs(inner(explicit))
        _version, _algorithms, encap, *rest = tlvs(inner(signed_data))
        optional = {element[0]: tlvs(inner(element)) for element in rest[:-1]}
        return cls(tlvs(inner(encap))[0], optional.get(0xA0, []), optional.get(0xA1, []), tlvs(inner(rest[-1])))


def attribute_values(signer_info: bytes, without: bytes | None = None) -> list[tuple[bytes, bytes]]:
    """(attrType, AttributeValue) pairs of the unsigned attributes, as encoded."""
    children = tlvs(inner(signer_info))
    unsigned = [c for c in children if c[0] == 0xA1]
    pairs = []
    for attribute in tlvs(inner(unsigned[0])) if unsigned else []:
        attr_type, values = tlvs(inner(attribute))
        if attr_type != without:
            pairs += [(attr_type, value) for value in tlvs(inner(values))]
    return pairs


def expected_index(parts: Parts, signer_info: bytes, algorithm: str) -> bytes:
    """ats-hash-index-v3 over what was there before the archive time-stamp (5.5.2)."""
    def octets(items: list[bytes]) -> bytes:
        return der(0x30, b"".join(der(0x04, hashlib.new(algorithm, i).digest()) for i in items))

    pairs = attribute_values(signer_info, without=ATS_V3)
    algorithm_id = der(0x30, core.ObjectIdentifier(algos.DigestAlgorithmId(algorithm).dotted).dump())
    return der(0x30, algorithm_id + octets(parts.certificates) + octets(parts.crls)
               + octets([t + v for t, v in pairs]))


def expected_imprint(parts: Parts, signer_info: bytes, content_digest: bytes, index: bytes,
                     algorithm: str) -> bytes:
    """5.5.3: eContentType || H(content) || version..signature of the SignerInfo || index."""
    signed_fields = tlvs(inner(signer_info))[:6]
    assert signed_fields[3][0] == 0xA0  # signedAttrs, with its [0] tag
    data = parts.econtent_type + content_digest + b"".join(signed_fields) + index
    return hashlib.new(algorithm, data).digest()


async def check_archive_timestamp(encoded: bytes, signer_raw: bytes, content: bytes, algorithm: str,
                                  context: ValidationContext, exact: bool = True) -> None:
    """The archive-time-stamp-v3 token is valid and its imprint is the ETSI one.

    ``exact``: nothing was added since, so the index is recomputed whole; otherwise (another
    signer came later) every index entry still has its item, and the stored index gives the imprint.
    """
    parts = Parts.of(encoded)
    [token_raw] = [v for t, v in attribute_values(signer_raw) if t == ATS_V3]
    token = cms.ContentInfo.load(token_raw)
    [stored] = [a["values"][0].dump() for a in token["content"]["signer_infos"][0]["unsigned_attrs"]
                if a["type"].dotted == ATS_INDEX_V3]
    if exact:
        assert stored == expected_index(parts, signer_raw, algorithm)
    else:
        assert _index_entries(stored) <= _index_entries(expected_index(parts, signer_raw, algorithm))
    imprint = expected_imprint(parts, signer_raw, hashlib.new(algorithm, content).digest(), stored, algorithm)
    kwargs = await validate_tst_signed_data(token["content"], context, lambda _algorithm: imprint)
    status = TimestampSignatureStatus(**kwargs)
    assert status.intact and status.valid and status.trusted


def _index_entries(index: bytes) -> set[tuple[int, bytes]]:
    _algorithm, *lists = tlvs(inner(index))
    return {(n, entry) for n, items in enumerate(lists) for entry in tlvs(inner(items))}
