"""XAdES signed properties (ETSI EN 319 132-1 clause 5.2) and the CSC ``signed_props`` a client may ask for.

Always written (the baseline B-B of clause 6.3): ``SigningTime`` (UTC), ``SigningCertificateV2``
(the digest of the signer's certificate, with the signature's digest algorithm, and its
``IssuerSerialV2``), and one ``DataObjectFormat`` with a ``MimeType`` per signed data object.

Accepted ``signed_props`` (each at most once; names compared case-insensitively; values 1 to 256
characters; documented in docs/signdoc.md), the same names as for CAdES where the property exists
in both:

- ``commitment-type-indication``: an ETSI commitment type (``proof-of-origin``, ...) or its
  dotted OID, written as ``CommitmentTypeIndication`` with ``AllSignedDataObjects``;
- ``signer-location``: free text, written as ``SignatureProductionPlaceV2/City``;
- ``signer-role``: free text, written as ``SignerRoleV2/ClaimedRoles/ClaimedRole``;
- ``mime-type``: the MIME type of the signed content (``DataObjectFormat/MimeType``; default
  ``text/xml`` for XML, ``application/octet-stream`` for other detached content);
- ``document-name``: the ``URI`` of a Detached signature's reference to the content (a relative
  file name, default ``document``): what a verifier is told to look for.

Anything else is refused: a signed property the signer did not mean cannot be taken back.
"""

from __future__ import annotations

import base64
import hashlib
import re
from dataclasses import dataclass
from datetime import UTC, datetime

from asn1crypto import tsp, x509
from lxml import etree

from rssp.documents.cades_props import COMMITMENTS, MAX_TEXT
from rssp.documents.model import DocumentError
from rssp.documents.xades_xml import DIGEST_URIS, XADES, ds, qname

ACCEPTED = ("commitment-type-indication", "signer-location", "signer-role", "mime-type", "document-name")
_NAME = re.compile(r"^[A-Za-z0-9._~-][A-Za-z0-9._~ -]*$")
DEFAULT_NAME = "document"


def xa(local: str) -> str:
    return qname(XADES, local)


@dataclass(frozen=True)
class Props:
    """The signed properties asked for, checked."""

    commitment: str | None = None  # dotted OID
    location: str | None = None
    role: str | None = None
    mime_type: str | None = None
    document_name: str = DEFAULT_NAME


def parse_props(signed_props: tuple[tuple[str, str | None], ...]) -> Props:
    """The accepted ``signed_props``, or :class:`DocumentError` (checked before anything is spent)."""
    given: dict[str, str] = {}
    for name, value in signed_props:
        key = name.strip().lower()
        if key not in ACCEPTED:
            raise DocumentError("unsupported signed_props attribute for XAdES")
        if key in given:
            raise DocumentError("a signed_props attribute is given twice")
        if not value or len(value) > MAX_TEXT:
            raise DocumentError("a signed_props attribute needs a value (at most 256 characters)")
        given[key] = value
    name = given.get("document-name", DEFAULT_NAME)
    if not _NAME.match(name):
        raise DocumentError("document-name must be a plain file name (letters, digits, '.', '_', '-', '~', spaces)")
    commitment = _commitment(given["commitment-type-indication"]) if "commitment-type-indication" in given else None
    return Props(commitment, given.get("signer-location"), given.get("signer-role"), given.get("mime-type"), name)


def _commitment(value: str) -> str:
    key = value.strip().lower()
    for name, commitment in COMMITMENTS.items():
        oid: str = commitment.asn1["commitment_type_id"].dotted
        if key in (name, oid):
            return oid
    raise DocumentError("unknown commitment-type-indication")


def digest_element(parent: etree._Element, tag: str, algorithm: str, data: bytes) -> etree._Element:
    """``tag`` holding ``ds:DigestMethod`` and ``ds:DigestValue`` of ``data`` (XAdES DigestAlgAndValueType)."""
    holder = etree.SubElement(parent, tag)
    etree.SubElement(holder, ds("DigestMethod"), Algorithm=DIGEST_URIS[algorithm])
    etree.SubElement(holder, ds("DigestValue")).text = base64.b64encode(hashlib.new(algorithm, data).digest()).decode()
    return holder


def issuer_serial_v2(cert: x509.Certificate) -> str:
    """IssuerSerialV2: the Base64 DER of RFC 5035's IssuerSerial (issuer as a directoryName)."""
    value = tsp.IssuerSerial({"issuer": [x509.GeneralName(name="directory_name", value=cert.issuer)],
                              "serial_number": cert.serial_number})
    return base64.b64encode(value.dump()).decode()


def xml_time(moment: datetime) -> str:
    return moment.astimezone(UTC).replace(microsecond=0).strftime("%Y-%m-%dT%H:%M:%SZ")


def add_signed_properties(parent: etree._Element, props_id: str, cert: x509.Certificate, algorithm: str,
                          props: Props, objects: list[tuple[str, str]]) -> etree._Element:
    """``xades:SignedProperties`` under ``parent`` (the QualifyingProperties, which binds the prefixes);
    ``objects``: (reference Id, MIME type) of each signed data object."""
    root = etree.SubElement(parent, xa("SignedProperties"), Id=props_id)
    signature_props = etree.SubElement(root, xa("SignedSignatureProperties"))
    etree.SubElement(signature_props, xa("SigningTime")).text = xml_time(datetime.now(UTC))
    cert_ref = etree.SubElement(etree.SubElement(signature_props, xa("SigningCertificateV2")), xa("Cert"))
    digest_element(cert_ref, xa("CertDigest"), algorithm, cert.dump())
    etree.SubElement(cert_ref, xa("IssuerSerialV2")).text = issuer_serial_v2(cert)
    if props.location:
        place = etree.SubElement(signature_props, xa("SignatureProductionPlaceV2"))
        etree.SubElement(place, xa("City")).text = props.location
    if props.role:
        roles = etree.SubElement(etree.SubElement(signature_props, xa("SignerRoleV2")), xa("ClaimedRoles"))
        etree.SubElement(roles, xa("ClaimedRole")).text = props.role
    data_props = etree.SubElement(root, xa("SignedDataObjectProperties"))
    for reference_id, mime_type in objects:
        data_format = etree.SubElement(data_props, xa("DataObjectFormat"), ObjectReference=f"#{reference_id}")
        etree.SubElement(data_format, xa("MimeType")).text = mime_type
    if props.commitment:
        indication = etree.SubElement(data_props, xa("CommitmentTypeIndication"))
        type_id = etree.SubElement(indication, xa("CommitmentTypeId"))
        etree.SubElement(type_id, xa("Identifier"), Qualifier="OIDAsURN").text = f"urn:oid:{props.commitment}"
        etree.SubElement(indication, xa("AllSignedDataObjects"))
    return root
