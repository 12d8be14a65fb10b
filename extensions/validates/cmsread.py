"""How a CMS SignedData is read for validation: what it carries, and one signer's view of it.

- :func:`known_data`: the certificates and revocation data a SignedData carries, where EN 319
  122-1 puts them (``SignedData.certificates``; ``SignedData.crls`` with CRLs and OCSP
  responses, as RFC 5940 id-ri-ocsp-response or a bare id-pkix-ocsp-basic) and in the older
  certificate-values / revocation-values attributes, which asn1crypto does not know (their
  specifications are here). Each part is read on its own: what cannot be read is left out.
- :func:`single_signer`: the SignedData with only one SignerInfo, as pyHanko's processes read
  it, the SignerInfo kept byte for byte.
- :func:`der_ordered`: the same view with the signed attributes in DER order, for producers
  that wrote them unsorted but signed their DER encoding, as RFC 5652 5.4 says.
"""

from __future__ import annotations

from typing import Any

from asn1crypto import cms, core, crl, ocsp, parser, x509
from pyhanko.sign.validation.policy_decl import LocalKnowledge
from pyhanko_certvalidator.revinfo.archival import CRLContainer, OCSPContainer

CERTIFICATE_VALUES = "1.2.840.113549.1.9.16.2.23"
REVOCATION_VALUES = "1.2.840.113549.1.9.16.2.24"
OCSP_RESPONSE_RI = "1.3.6.1.5.5.7.16.2"  # RFC 5940 id-ri-ocsp-response
OCSP_BASIC = "1.3.6.1.5.5.7.48.1.1"  # id-pkix-ocsp-basic: a BasicOCSPResponse, as some producers put it there


class _CRLs(core.SequenceOf):
    _child_spec = crl.CertificateList


class _BasicResponses(core.SequenceOf):
    _child_spec = ocsp.BasicOCSPResponse


class RevocationValues(core.Sequence):
    """The revocation-values attribute (EN 319 122-1 5.5.2 / TS 101 733 CAdES-X-L), explicit tags.

    asn1crypto does not know this attribute nor certificate-values: their values come back
    as raw ``Any`` and are read with these specifications."""

    _fields = [("crl_vals", _CRLs, {"explicit": 0, "optional": True}),
               ("ocsp_vals", _BasicResponses, {"explicit": 1, "optional": True}),
               ("other_rev_vals", core.Any, {"explicit": 2, "optional": True})]


class CertificateValues(core.SequenceOf):
    _child_spec = x509.Certificate


class _OtherRevocationInfo(core.Sequence):
    """RFC 5652 OtherRevocationInfoFormat with its content left raw."""

    _fields = [("format", core.ObjectIdentifier), ("info", core.Any)]


def _response(basic: ocsp.BasicOCSPResponse) -> ocsp.OCSPResponse:
    """A BasicOCSPResponse as the OCSPResponse pyhanko-certvalidator reads."""
    return ocsp.OCSPResponse({"response_status": "successful", "response_bytes": {
        "response_type": "basic_ocsp_response", "response": basic}})


def _each(values: Any, read: Any) -> None:
    """``read`` every value; one that cannot be read is left out (untrusted input), not the rest."""
    for value in values:
        try:
            read(value)
        except Exception:  # noqa: BLE001, S112 - untrusted input: an unreadable item is left out
            continue


def known_data(signed: cms.SignedData) -> LocalKnowledge:
    """The validation data a CMS carries (EN 319 122-1 places, and the older attributes).

    Each part is read on its own: a part that cannot be read is left out, the others still count.
    """
    certs: list[x509.Certificate] = []
    crls: list[crl.CertificateList] = []
    ocsps: list[ocsp.OCSPResponse] = []

    def signed_data_crl(choice: Any) -> None:
        if choice.name == "crl":
            crls.append(choice.chosen)
            return
        other = _OtherRevocationInfo.load(choice.chosen.untag().dump())  # raw: asn1crypto mis-reads id-pkix-ocsp-basic
        if other["format"].dotted == OCSP_RESPONSE_RI:
            ocsps.append(ocsp.OCSPResponse.load(other["info"].dump()))
        elif other["format"].dotted == OCSP_BASIC:
            ocsps.append(_response(ocsp.BasicOCSPResponse.load(other["info"].dump())))

    def attribute(attr: cms.CMSAttribute) -> None:
        if attr["type"].dotted == REVOCATION_VALUES:
            values = RevocationValues.load(attr["values"][0].dump())
            crls.extend(values["crl_vals"] or [])
            ocsps.extend(_response(basic) for basic in values["ocsp_vals"] or [])
        elif attr["type"].dotted == CERTIFICATE_VALUES:
            certs.extend(CertificateValues.load(attr["values"][0].dump()))

    _each(signed["certificates"] or [], lambda c: certs.append(c.chosen) if c.name == "certificate" else None)
    _each(signed["crls"] or [], signed_data_crl)
    _each(signed["signer_infos"], lambda signer_info: _each(signer_info["unsigned_attrs"] or [], attribute))
    return LocalKnowledge(
        known_ocsps=[c for o in ocsps if _readable(o, _response_data) for c in OCSPContainer.load_multi(o)],
        known_crls=[CRLContainer(crl_data=c) for c in crls if _readable(c)],
        known_certs=[c for c in certs if _readable(c)])


def _response_data(response: ocsp.OCSPResponse) -> Any:
    """What an OCSP response is judged by: its single responses, production time and responder
    (a producer's malformed nonce extension is not read, as pyhanko-certvalidator does not)."""
    data = response.basic_ocsp_response["tbs_response_data"]
    return [data["responses"], data["produced_at"], data["responder_id"]]


def _readable(value: Any, parts: Any = lambda v: [v]) -> bool:
    """Parsed through (asn1crypto parses lazily): an unreadable item is left out, not fatal later."""
    try:
        [part.native for part in parts(value)]  # noqa: B018
    except Exception:  # noqa: BLE001 - untrusted input
        return False
    return True


def known_safely(signed: cms.SignedData) -> LocalKnowledge:
    try:
        return known_data(signed)
    except Exception:  # noqa: BLE001 - unreadable embedded data is ignored: validation fetches or says so
        return LocalKnowledge()


def single_signer(data: bytes, signed: cms.SignedData, position: int) -> cms.SignedData:
    """The SignedData as pyHanko reads it for one signer: the same, with only that SignerInfo.

    Built from the encoded elements (:func:`_fields`), each kept byte for byte: re-encoding the
    SignerInfo through asn1crypto's object model sorts the SETs nested in its signed
    attributes (e.g. the certificates of a content time-stamp), and the signature, computed
    over the bytes as they were, then no longer verifies.
    """
    try:
        fields, signers = _fields(data)
        return _alone(fields, signers[position])
    except (ValueError, IndexError):  # asn1crypto read it, the splitter does not: the object model's copy
        view = signed.copy()
        view["signer_infos"] = cms.SignerInfos([signed["signer_infos"][position].copy()])
        return view


def der_ordered(data: bytes, position: int) -> cms.SignedData | None:
    """:func:`single_signer` with the signer's signed attributes in DER order, or None when they
    already are (or the CMS cannot be taken apart).

    RFC 5652 5.4: the signature covers the DER encoding of the signed attributes, a SET OF whose
    DER form is sorted. Some producers store them unsorted and sign the sorted form (EU DSS's
    "reordered" files); others sign what they store. The bytes as stored are checked first
    (:mod:`.cades`); this view is the second reading. Each attribute is kept byte for byte.
    """
    try:
        fields, signers = _fields(data)
        signer = _tlvs(parser.parse(signers[position])[4])
        index = next(i for i, f in enumerate(signer) if f[0] == 0xA0)
        attrs = _tlvs(parser.parse(signer[index])[4])
    except (StopIteration, ValueError, IndexError):
        return None
    if attrs == sorted(attrs):
        return None
    signer[index] = core.Set(contents=b"".join(sorted(attrs)), implicit=0).dump()
    return _alone(fields, core.Sequence(contents=b"".join(signer)).dump())


def _fields(data: bytes) -> tuple[list[bytes], list[bytes]]:
    """The encoded fields of the ContentInfo's SignedData but its SignerInfos, and the SignerInfos
    (BER indefinite lengths included, as they came). ValueError if it is not shaped so."""
    oid, wrapped = _tlvs(parser.parse(data)[4])[:2]
    signed_data = _tlvs(parser.parse(wrapped)[4])[0]
    fields = _tlvs(parser.parse(signed_data)[4])
    if len(fields) < 4 or fields[-1][0] != 0x31:
        raise ValueError("not a SignedData")
    return [oid, *fields[:-1]], _tlvs(parser.parse(fields[-1])[4])


def _alone(fields: list[bytes], signer_info: bytes) -> cms.SignedData:
    oid, *rest = fields
    body = core.Sequence(contents=b"".join([*rest, core.Set(contents=signer_info).dump()])).dump()
    info = core.Sequence(contents=oid + core.Sequence(contents=body, implicit=0).dump()).dump()
    return cms.ContentInfo.load(info)["content"]


def _tlvs(contents: bytes) -> list[bytes]:
    out = []
    while contents:
        length = parser.peek(contents)
        out.append(contents[:length])
        contents = contents[length:]
    return out
