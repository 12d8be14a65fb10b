"""CAdES-B-LTA: the archive-time-stamp-v3 unsigned attribute and its ats-hash-index-v3
(ETSI EN 319 122-1, clauses 5.5.2 and 5.5.3) — the JIS X 5092 long-term form.

Hand-written on asn1crypto because no maintained Python library builds them: pyHanko stops at
CAdES-B-T for CMS (its long-term PDF signatures use document time-stamps and a DSS instead), and
neither asn1crypto nor cryptography know these attributes. The attribute types are registered on
asn1crypto's ``cms`` module the way pyHanko registers its own CAdES attributes
(``pyhanko.sign.ades.asn1_util.register_cms_attribute``), so parsed CMS shows them by name.

The message imprint (clause 5.5.3) is the hash of the concatenation of, in this order:
  1. SignedData.encapContentInfo.eContentType, as encoded (tag, length, value);
  2. the hash of the signed content (what the message-digest attribute covers), raw octets;
  3. the SignerInfo's version, sid, digestAlgorithm, signedAttrs (with its [0] tag),
     signatureAlgorithm and signature, each as encoded;
  4. the ATSHashIndexV3 value, DER;
and that ATSHashIndexV3 is put in the time-stamp token's own SignerInfo as the unsigned attribute
ats-hash-index-v3. The index (clause 5.5.2) holds one hash per SignedData.certificates element,
one per SignedData.crls element, and one per attribute value of the SignerInfo's unsigned
attributes (hash of attrType || AttributeValue), all as present when the time-stamp is asked; so
validation data added later (another signer, the next renewal) leaves the time-stamp valid.
All hashes use the time-stamp's hash algorithm, which we take equal to the signature's digest
algorithm so that item 2 is the digest we already have (also for a client-computed digest).
"""

from __future__ import annotations

import hashlib

from asn1crypto import algos, cms, core
from pyhanko.sign.ades.asn1_util import register_cms_attribute

from rssp.documents.cades_envelope import Envelope

ATS_HASH_INDEX_V3 = "0.4.0.19122.1.5"  # id-aa-ATSHashIndex-v3
ARCHIVE_TIME_STAMP_V3 = "0.4.0.1733.2.4"  # id-aa-ets-archiveTimestampV3
SIGNED_FIELDS = ("version", "sid", "digest_algorithm", "signed_attrs", "signature_algorithm", "signature")


class OctetStrings(core.SequenceOf):  # type: ignore[misc]  # asn1crypto is untyped: its classes are Any to mypy
    _child_spec = core.OctetString


class HashAlgorithm(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped: its classes are Any to mypy
    """AlgorithmIdentifier written without parameters, as RFC 5754 says for SHA-2 (asn1crypto's
    DigestAlgorithm always writes NULL ones); either form reads back."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative spec
        ("algorithm", algos.DigestAlgorithmId),
        ("parameters", core.Any, {"optional": True}),
    ]


class ATSHashIndexV3(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped: its classes are Any to mypy
    """EN 319 122-1 annex D: hashIndAlgorithm has no DEFAULT in the v3 index (always written)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative spec
        ("hash_ind_algorithm", HashAlgorithm),
        ("certificates_hash_index", OctetStrings),
        ("crls_hash_index", OctetStrings),
        ("unsigned_attr_values_hash_index", OctetStrings),
    ]


register_cms_attribute(ATS_HASH_INDEX_V3, "ats_hash_index_v3", ATSHashIndexV3)
register_cms_attribute(ARCHIVE_TIME_STAMP_V3, "archive_time_stamp_v3", cms.ContentInfo)


def hash_index(envelope: Envelope, signer_info: cms.SignerInfo, algorithm: str) -> ATSHashIndexV3:
    """The ats-hash-index-v3 value for ``signer_info`` within ``envelope`` as it is now."""
    def digest(data: bytes) -> bytes:
        return hashlib.new(algorithm, data).digest()

    as_written = cms.SignerInfo.load(signer_info.dump())  # attributes in the order of the encoding
    values = [attr["type"].dump() + value.dump() for attr in _unsigned(as_written) for value in attr["values"]]
    return ATSHashIndexV3({
        "hash_ind_algorithm": {"algorithm": algorithm},
        "certificates_hash_index": [digest(c) for c in envelope.certificates],
        "crls_hash_index": [digest(c) for c in envelope.crls],
        "unsigned_attr_values_hash_index": [digest(v) for v in values],
    })


def message_imprint(envelope: Envelope, signer_info: cms.SignerInfo, content_digest: bytes,
                    index: ATSHashIndexV3, algorithm: str) -> bytes:
    """The archive time-stamp's message imprint (clause 5.5.3, items 1 to 4)."""
    h = hashlib.new(algorithm)
    h.update(envelope.econtent_type)
    h.update(content_digest)
    for name in SIGNED_FIELDS:
        h.update(signer_info[name].dump())
    h.update(index.dump())
    return h.digest()


def archive_attribute(token: cms.ContentInfo, index: ATSHashIndexV3) -> cms.CMSAttribute:
    """The archive-time-stamp-v3 attribute for the TSA's ``token`` (asked for the imprint computed
    with ``index``): the index goes into the token's SignerInfo as ats-hash-index-v3, an unsigned
    attribute, so the TSA's signature stays valid."""
    tsa_signer = token["content"]["signer_infos"][0]
    add_unsigned(tsa_signer, cms.CMSAttribute({"type": "ats_hash_index_v3", "values": [index]}))
    return cms.CMSAttribute({"type": "archive_time_stamp_v3", "values": [token]})


def add_unsigned(signer_info: cms.SignerInfo, attribute: cms.CMSAttribute) -> None:
    """Append an unsigned attribute (the signed part, and so the signature, stays as it is)."""
    signer_info["unsigned_attrs"] = [*_unsigned(signer_info), attribute]


def _unsigned(signer_info: cms.SignerInfo) -> list[cms.CMSAttribute]:
    attrs = signer_info["unsigned_attrs"]
    return [] if isinstance(attrs, core.Void) else list(attrs)
