"""XAdES unsigned signature properties (ETSI EN 319 132-1 clause 5.3 to 5.5): the elements, written on lxml.

- ``xades:SignatureTimeStamp`` (B-T): an RFC 3161 token over :func:`.xades_archive.signature_timestamp_input`;
- ``xades:CertificateValues`` and ``xades:RevocationValues`` (B-LT, clauses 5.4.1 and 5.4.2): the
  certificates of the signer's and the TSA's paths, and their CRLs and OCSP responses (each
  ``EncapsulatedOCSPValue`` the DER OCSPResponse), Base64;
- ``xades141:ArchiveTimeStamp`` (B-LTA, 5.5.2): a token over :func:`.xades_archive.archive_input`;
- ``xades141:TimeStampValidationData`` (5.5.1): validation data of a TSA that answered after the
  B-LT values were written (another TSA for the archive time-stamp), right after that time-stamp.

Every time-stamp names its canonicalisation method (exclusive C14N), so a verifier does not fall
back to the inclusive default.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable

from lxml import etree

from rssp.documents.xades_xml import EXC_C14N, XADES, XADES141, ds, qname


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def xa(local: str) -> str:
    return qname(XADES, local)


def _timestamp(parent: etree._Element, tag: str, stamp_id: str, token: bytes,
               nsmap: dict[str, str] | None = None) -> etree._Element:
    stamp = etree.SubElement(parent, tag, {"Id": stamp_id}, nsmap=nsmap)
    etree.SubElement(stamp, ds("CanonicalizationMethod"), Algorithm=EXC_C14N)
    etree.SubElement(stamp, xa("EncapsulatedTimeStamp")).text = _b64(token)
    return stamp


def add_signature_timestamp(container: etree._Element, stamp_id: str, token: bytes) -> etree._Element:
    return _timestamp(container, xa("SignatureTimeStamp"), stamp_id, token)


def add_archive_timestamp(container: etree._Element, stamp_id: str, token: bytes) -> etree._Element:
    return _timestamp(container, qname(XADES141, "ArchiveTimeStamp"), stamp_id, token, {"xades141": XADES141})


def _values(parent: etree._Element, certificates: Iterable[bytes], crls: Iterable[bytes],
            ocsps: Iterable[bytes]) -> None:
    certificates, crls, ocsps = list(certificates), list(crls), list(ocsps)
    if certificates:
        values = etree.SubElement(parent, xa("CertificateValues"))
        for der in certificates:
            etree.SubElement(values, xa("EncapsulatedX509Certificate")).text = _b64(der)
    if crls or ocsps:
        revocation = etree.SubElement(parent, xa("RevocationValues"))
        if crls:
            holder = etree.SubElement(revocation, xa("CRLValues"))
            for der in crls:
                etree.SubElement(holder, xa("EncapsulatedCRLValue")).text = _b64(der)
        if ocsps:
            holder = etree.SubElement(revocation, xa("OCSPValues"))
            for der in ocsps:
                etree.SubElement(holder, xa("EncapsulatedOCSPValue")).text = _b64(der)


def add_validation_values(container: etree._Element, certificates: Iterable[bytes], crls: Iterable[bytes],
                          ocsps: Iterable[bytes]) -> None:
    """B-LT: ``CertificateValues`` then ``RevocationValues`` (each only when there is something to put)."""
    _values(container, certificates, crls, ocsps)


def add_timestamp_validation_data(container: etree._Element, stamp_id: str, certificates: Iterable[bytes],
                                  crls: Iterable[bytes], ocsps: Iterable[bytes]) -> None:
    holder = etree.SubElement(container, qname(XADES141, "TimeStampValidationData"), {"Id": stamp_id},
                              nsmap={"xades141": XADES141})
    _values(holder, certificates, crls, ocsps)
