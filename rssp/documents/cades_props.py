"""CSC ``signed_props`` for CAdES: the few standard signed attributes a client may ask for.

Accepted (each at most once; names compared case-insensitively; documented in docs/signdoc.md):

- ``commitment-type-indication``: one of the ETSI commitment types (EN 319 122-1 5.2.3, types of
  ETSI TS 119 172-1 annex B): ``proof-of-origin``, ``proof-of-receipt``, ``proof-of-delivery``,
  ``proof-of-sender``, ``proof-of-approval``, ``proof-of-creation`` (or its dotted OID);
- ``signer-location``: free text, written as SignerLocation.localityName (EN 319 122-1 5.2.5);
- ``mime-type``: the signed content's MIME type (EN 319 122-1 5.2.4).

Anything else is refused (DocumentError): a signed attribute the signer did not mean cannot be
taken back, and the B-B attributes (content-type, message-digest, signing-time,
signing-certificate-v2) are ours to write.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import core, x509
from pyhanko.sign.ades.api import CAdESSignedAttrSpec, GenericCommitment
from pyhanko.sign.ades.asn1_util import register_cms_attribute
from pyhanko.sign.ades.cades_asn1 import CommitmentTypeIndication
from pyhanko.sign.attributes import CMSAttributeProvider
from pyhanko.sign.signers.pdf_cms import PdfCMSSignedAttributes
from pyhanko.sign.timestamps import TimeStamper

from rssp.documents.model import DocumentError

MAX_TEXT = 256
COMMITMENTS = {c.name.lower().replace("_", "-"): c for c in GenericCommitment}


class PostalAddress(core.SequenceOf):  # type: ignore[misc]  # asn1crypto is untyped: its classes are Any to mypy
    _child_spec = x509.DirectoryString


class SignerLocation(core.Sequence):  # type: ignore[misc]  # asn1crypto is untyped: its classes are Any to mypy
    """RFC 5126 / EN 319 122-1 annex D (explicit tagging: DirectoryString is a CHOICE)."""

    _fields = [  # noqa: RUF012 - asn1crypto's declarative spec
        ("country_name", x509.DirectoryString, {"explicit": 0, "optional": True}),
        ("locality_name", x509.DirectoryString, {"explicit": 1, "optional": True}),
        ("postal_address", PostalAddress, {"explicit": 2, "optional": True}),
    ]


register_cms_attribute("1.2.840.113549.1.9.16.2.17", "signer_location", SignerLocation)


class _Fixed(CMSAttributeProvider):
    """A signed attribute whose value is known before signing."""

    def __init__(self, attribute_type: str, value: object) -> None:
        self.attribute_type = attribute_type
        self.value = value

    async def build_attr_value(self, dry_run: bool = False) -> object:
        return self.value


@dataclass(frozen=True)
class _Spec(CAdESSignedAttrSpec):
    """pyHanko's CAdES attribute spec plus the attributes it has no field for."""

    extra: tuple[tuple[str, object], ...] = ()

    def prepare_providers(self, message_digest: bytes, md_algorithm: str,
                          timestamper: TimeStamper | None = None) -> Iterator[CMSAttributeProvider]:
        yield from super().prepare_providers(message_digest, md_algorithm, timestamper)
        for attribute_type, value in self.extra:
            yield _Fixed(attribute_type, value)


def signed_attributes(signed_props: tuple[tuple[str, str | None], ...]) -> PdfCMSSignedAttributes:
    """pyHanko's signed-attribute settings for these props, signing-time now (UTC)."""
    given: dict[str, str] = {}
    for name, value in signed_props:
        key = name.strip().lower()
        if key not in ("commitment-type-indication", "signer-location", "mime-type"):
            raise DocumentError("unsupported signed_props attribute for CAdES")
        if key in given:
            raise DocumentError("a signed_props attribute is given twice")
        if not value or len(value) > MAX_TEXT:
            raise DocumentError("a signed_props attribute needs a value (at most 256 characters)")
        given[key] = value
    extra: list[tuple[str, object]] = []
    if "signer-location" in given:
        extra.append(("signer_location", SignerLocation(
            {"locality_name": x509.DirectoryString(name="utf8_string", value=given["signer-location"])})))
    if "mime-type" in given:
        extra.append(("mime_type", core.UTF8String(given["mime-type"])))
    commitment = _commitment(given["commitment-type-indication"]) if "commitment-type-indication" in given else None
    spec = _Spec(commitment_type=commitment, extra=tuple(extra))
    return PdfCMSSignedAttributes(signing_time=datetime.now(UTC), cades_signed_attrs=spec)


def _commitment(value: str) -> CommitmentTypeIndication:
    key = value.strip().lower()
    for name, commitment in COMMITMENTS.items():
        if key in (name, commitment.asn1["commitment_type_id"].dotted):
            return commitment.asn1
    raise DocumentError("unknown commitment-type-indication")
