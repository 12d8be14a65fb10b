"""Building CMP requests and reading responses (RFC 4210, lightweight profile RFC 9483).

Bodies are assembled as DER with their context tag and decoded into the pyasn1-alt-modules
types (``rfc9480``), which keeps tagged CHOICE alternatives right without pyasn1 gymnastics;
headers are filled field by field. A request is ``PKIMessage`` = header, body, protection,
extraCerts; its protection covers the DER ``ProtectedPart``.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from datetime import datetime, UTC

from pyasn1.codec.der import decoder, encoder
from pyasn1.error import PyAsn1Error
from pyasn1.type import univ
from pyasn1_alt_modules import rfc5280, rfc9480

from ca_connectors.cmp import der
from rssp.ca import CAError

PVNO = 2  # cmp2000: what OpenSSL 3.0 and RFC 9483 clients send for these messages
BODY_TAGS = {"ir": 0, "cr": 2, "p10cr": 4, "certConf": 24, "pollReq": 25}
_IMPLICIT_CONFIRM = univ.ObjectIdentifier("1.3.6.1.5.5.7.4.13")
STATUS_NAMES = {0: "accepted", 1: "grantedWithMods", 2: "rejection", 3: "waiting", 4: "revocationWarning",
                5: "revocationNotification", 6: "keyUpdateWarning"}
FAIL_INFO = ["badAlg", "badMessageCheck", "badRequest", "badTime", "badCertId", "badDataFormat", "wrongAuthority",
             "incorrectData", "missingTimeStamp", "badPOP", "certRevoked", "certConfirmed", "wrongIntegrity",
             "badRecipientNonce", "timeNotAvailable", "unacceptedPolicy", "unacceptedExtension",
             "addInfoNotAvailable", "badSenderNonce", "badCertTemplate", "signerNotTrusted", "transactionIdInUse",
             "unsupportedVersion", "notAuthorized", "systemUnavail", "systemFailure", "duplicateCertReq"]


def directory_name(name_der: bytes | None) -> rfc5280.GeneralName:
    """GeneralName directoryName [4] of a DER Name (the NULL-DN when None)."""
    name = name_der if name_der is not None else der.tlv(0x30, b"")
    general, _ = decoder.decode(der.tlv(0xA4, name), asn1Spec=rfc5280.GeneralName())
    return general


def make_body(kind: str, inner_der: bytes) -> rfc9480.PKIBody:
    body, _ = decoder.decode(der.tlv(0xA0 | BODY_TAGS[kind], inner_der), asn1Spec=rfc9480.PKIBody())
    return body


@dataclass
class Transaction:
    """The state shared by the messages of one enrollment: IDs, nonces, names."""

    sender: bytes | None  # DER Name; None = NULL-DN (MAC protection identifies by senderKID)
    recipient: bytes | None
    sender_kid: bytes | None
    implicit_confirm: bool = False
    transaction_id: bytes = field(default_factory=lambda: os.urandom(16))
    last_nonce: bytes = b""  # our senderNonce in the latest request
    recip_nonce: bytes | None = None  # the CA's senderNonce from its latest response

    def header(self, alg_oid: str, alg_params: bytes | None, *, first: bool) -> rfc9480.PKIHeader:
        header = rfc9480.PKIHeader()
        header["pvno"] = PVNO
        header["sender"] = directory_name(self.sender)
        header["recipient"] = directory_name(self.recipient)
        header["messageTime"] = datetime.now(UTC).strftime("%Y%m%d%H%M%SZ")
        header["protectionAlg"]["algorithm"] = univ.ObjectIdentifier(alg_oid)
        if alg_params is not None:
            header["protectionAlg"]["parameters"] = alg_params
        if self.sender_kid:
            header["senderKID"] = self.sender_kid
        header["transactionID"] = self.transaction_id
        self.last_nonce = os.urandom(16)
        header["senderNonce"] = self.last_nonce
        if self.recip_nonce is not None:
            header["recipNonce"] = self.recip_nonce
        if first and self.implicit_confirm:
            info = header["generalInfo"].getComponentType().clone()
            info["infoType"] = _IMPLICIT_CONFIRM
            info["infoValue"] = encoder.encode(univ.Null(""))
            header["generalInfo"].append(info)
        return header


def encode_message(header: rfc9480.PKIHeader, body: rfc9480.PKIBody, protect, extra_certs: list[bytes]) -> bytes:
    """DER PKIMessage with ``protect(protected_part_der)`` as its protection."""
    header_der, body_der = encoder.encode(header), encoder.encode(body)
    protection = protect(der.tlv(0x30, header_der + body_der))
    bits = der.tlv(0x03, b"\x00" + protection)
    out = header_der + body_der + der.tlv(0xA0, bits)
    if extra_certs:
        out += der.tlv(0xA1, der.tlv(0x30, b"".join(extra_certs)))
    return der.tlv(0x30, out)


def p10cr_body(csr_der: bytes) -> rfc9480.PKIBody:
    return make_body("p10cr", csr_der)


def cert_conf_body(cert_hash: bytes, cert_req_id: int, reject: str | None = None) -> rfc9480.PKIBody:
    status = rfc9480.CertStatus()
    status["certHash"] = cert_hash
    status["certReqId"] = cert_req_id
    if reject is not None:
        status["statusInfo"]["status"] = 2
        text = status["statusInfo"]["statusString"].getComponentType().clone(reject)
        status["statusInfo"]["statusString"].append(text)
    content = rfc9480.CertConfirmContent()
    content.append(status)
    return make_body("certConf", encoder.encode(content))


def poll_req_body(cert_req_id: int) -> rfc9480.PKIBody:
    return make_body("pollReq", der.tlv(0x30, der.tlv(0x30, encoder.encode(univ.Integer(cert_req_id)))))


# --- responses -----------------------------------------------------------------------------

@dataclass(frozen=True)
class Response:
    """A decoded response and what protection checking needs, in received form."""

    message: rfc9480.PKIMessage
    protected_part: bytes
    protection: bytes | None
    alg_oid: str | None
    alg_params: bytes | None
    extra_certs: list[bytes]

    @property
    def kind(self) -> str:
        return self.message["body"].getName()

    @property
    def body(self):
        return self.message["body"].getComponent()


def decode_response(data: bytes) -> Response:
    try:
        message, rest = decoder.decode(data, asn1Spec=rfc9480.PKIMessage())
        if rest:
            raise CAError("CMP response has trailing data")
        protected = der.protected_part(data)
    except (PyAsn1Error, ValueError):
        raise CAError("CMP response is not a valid PKIMessage") from None
    header = message["header"]
    alg_oid = alg_params = None
    if header["protectionAlg"].isValue:
        alg_oid = str(header["protectionAlg"]["algorithm"])
        params = header["protectionAlg"]["parameters"]
        alg_params = bytes(params) if params.isValue else None
    protection = message["protection"].asOctets() if message["protection"].isValue else None
    extra = [encoder.encode(c) for c in message["extraCerts"]] if message["extraCerts"].isValue else []
    return Response(message, protected, protection, alg_oid, alg_params, extra)


def status_text(info) -> str:
    """``rejection: <statusString> (failInfo: badPOP, ...)`` from a PKIStatusInfo."""
    status = int(info["status"])
    text = STATUS_NAMES.get(status, f"status {status}")
    if info["statusString"].isValue:
        strings = "; ".join(str(s) for s in info["statusString"])
        if strings:
            text += f": {strings[:300]}"
    if info["failInfo"].isValue:
        bits = [FAIL_INFO[i] for i, b in enumerate(info["failInfo"]) if b and i < len(FAIL_INFO)]
        if bits:
            text += f" (failInfo: {', '.join(bits)})"
    return text


async def cert_req_body(kind: str, subject_der: bytes, spki_der: bytes, key) -> rfc9480.PKIBody:
    """``ir``/``cr``: one CRMF CertReqMsg (RFC 4211) for ``subject`` and ``spki``, POP by signature.

    The POP is the new key's signature over the DER ``CertRequest`` (§4.1, subject present, so no
    POPOSigningKeyInput); ``key`` signs in the HSM (a :class:`rssp.x509.builder.SigningKeyRef`).
    The module uses IMPLICIT tags: ``publicKey [6]`` replaces the SPKI's SEQUENCE tag, ``subject
    [5]`` wraps the Name (a CHOICE, hence explicit), ``signature [1]`` replaces POPOSigningKey's.
    """
    template = der.tlv(0x30, der.tlv(0xA5, subject_der) + der.tlv(0xA6, der.content(spki_der)))
    cert_request = der.tlv(0x30, encoder.encode(univ.Integer(0)) + template)
    signature = await key.sign(cert_request)
    popo = der.tlv(0xA1, key.signature_algorithm().dump() + der.tlv(0x03, b"\x00" + signature))
    messages = der.tlv(0x30, der.tlv(0x30, cert_request + popo))
    return make_body(kind, messages)
