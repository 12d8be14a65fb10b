"""The CMP CA connector: ``p10cr`` (or ``ir``/``cr``) enrollment over HTTP, certConf/pkiConf, polling.

rssp builds the PKCS#10 request inside the HSM (its signature is the proof of possession),
sends it as ``p10cr`` (or, for a CA configured with ``request_type = "ir"|"cr"``, as a CRMF
request whose proof of possession the HSM key signs) protected by the shared-secret MAC or a
client signature, checks the answer (transaction ID, nonces, protection, status), confirms the
certificate (``certConf``, unless the CA granted implicit confirmation) and waits for ``pkiConf``.
A ``waiting`` status is polled (``pollReq``) up to ``poll_seconds``; rejections and errors become
a :class:`CAError` carrying the CA's status text and failInfo, which ``rssp credential create`` shows as is.
"""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import csr as asn1_csr
from asn1crypto import pem
from asn1crypto import x509 as asn1_x509
from cryptography import x509
from cryptography.hazmat.primitives.serialization import load_pem_private_key
from pyasn1.codec.der import encoder

from ca_connectors.cmp import der, messages
from ca_connectors.cmp.messages import Response, Transaction
from ca_connectors.cmp.protection import MacProtection, SignatureProtection, subject_key_id
from rssp.ca import CAError, IssuedCertificate

log = logging.getLogger("ca_connectors.cmp")

CONTENT_TYPE = "application/pkixcmp"
REQUEST_TYPES = ("p10cr", "cr", "ir")
MAX_RESPONSE = 1024 * 1024
_HASH_OF_SIG = {"sha384": hashlib.sha384, "sha512": hashlib.sha512}


def _read_der_certs(path: Path) -> list[bytes]:
    data = path.read_bytes()
    if pem.detect(data):
        return [d for _t, _h, d in pem.unarmor(data, multiple=True)]
    return [data]


class CmpConnector:
    """A :class:`rssp.ca.CAConnector` for a CA that speaks CMP over HTTP."""

    def __init__(self, *, url: str, protection: MacProtection | SignatureProtection, anchors: list[bytes],
                 recipient: bytes | None = None, sender: bytes | None = None, implicit_confirm: bool = False,
                 timeout: float = 30.0, poll_seconds: float = 60.0, request_type: str = "p10cr") -> None:
        if request_type not in REQUEST_TYPES:
            raise CAError(f"unknown CMP request type {request_type!r}; one of {', '.join(REQUEST_TYPES)}")
        self.request_type = request_type
        self.url = url
        self.protection = protection
        self.anchors = anchors
        self.recipient = recipient
        self.sender = sender
        self.implicit_confirm = implicit_confirm
        self.timeout = timeout
        self.poll_seconds = poll_seconds

    # --- configuration -------------------------------------------------------------------

    @classmethod
    def from_config(cls, config: dict[str, Any], hsm: Any = None) -> CmpConnector:
        """Build from ``[ca.ID]``; file names are relative to the instance directory."""
        base = Path(config.get("directory", "."))
        try:
            url = config["url"]
            anchors = [d for name in config.get("anchors", []) for d in _read_der_certs(base / name)]
            server_cert = _read_der_certs(base / config["server_cert"])[0] if config.get("server_cert") else None
            sender = None
            if config.get("mac_secret_file"):
                secret = (base / config["mac_secret_file"]).read_text(encoding="utf-8").strip().encode()
                protection: MacProtection | SignatureProtection = MacProtection(
                    secret, str(config["reference"]).encode())
            else:
                cert = _read_der_certs(base / config["client_cert"])[0]
                key = load_pem_private_key((base / config["client_key"]).read_bytes(), password=None)
                protection = SignatureProtection(key, cert, server_cert)
                sender = x509.load_der_x509_certificate(cert).subject.public_bytes()
            recipient = None
            if config.get("recipient"):
                recipient = x509.Name.from_rfc4514_string(config["recipient"]).public_bytes()
        except (KeyError, OSError, ValueError) as exc:
            raise CAError(f"cmp CA configuration is incomplete or malformed: {type(exc).__name__}: {exc}") from None
        return cls(url=url, protection=protection, anchors=anchors, recipient=recipient, sender=sender,
                   implicit_confirm=bool(config.get("implicit_confirm", False)),
                   timeout=float(config.get("timeout_seconds", 30)),
                   poll_seconds=float(config.get("poll_seconds", 60)),
                   request_type=str(config.get("request_type", "p10cr")))

    def trust_anchors(self) -> list[bytes]:
        return list(self.anchors)

    # --- enrollment ----------------------------------------------------------------------

    async def issue(self, csr_der: bytes, *, profile: str = "signing") -> IssuedCertificate:
        """p10cr → cp (polling while waiting) → certConf → pkiConf."""
        if profile != "signing":
            raise CAError(f"unknown certificate profile {profile!r}")
        return await self._enroll(csr_der, messages.p10cr_body(csr_der))

    async def issue_for_key(self, csr_der: bytes, key: Any) -> IssuedCertificate:
        """As :meth:`issue`, but an ``ir``/``cr`` CA gets a CRMF request whose POP ``key`` signs."""
        if self.request_type == "p10cr":
            return await self.issue(csr_der)
        info = asn1_csr.CertificationRequest.load(csr_der)["certification_request_info"]
        body = await messages.cert_req_body(self.request_type, info["subject"].dump(),
                                            info["subject_pk_info"].dump(), key)
        return await self._enroll(csr_der, body)

    async def _enroll(self, csr_der: bytes, request_body: Any) -> IssuedCertificate:
        tx = Transaction(sender=self.sender, recipient=self.recipient, sender_kid=self._sender_kid(),
                         implicit_confirm=self.implicit_confirm)
        async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout)) as http:
            response = await self._exchange(http, tx, request_body, first=True)
            response = await self._until_issued(http, tx, response)
            cert_der, req_id, chain = self._certificate(response)
            requested = asn1_x509.Certificate.load(cert_der).public_key.dump()
            wanted = asn1_csr.CertificationRequest.load(csr_der)["certification_request_info"]["subject_pk_info"].dump()
            mismatch = requested != wanted
            if not (self._implicitly_confirmed(response) and not mismatch):
                reject = "certificate does not carry the requested public key" if mismatch else None
                conf = await self._exchange(http, tx, messages.cert_conf_body(_cert_hash(cert_der), req_id, reject),
                                            first=False)
                if conf.kind != "pkiconf":
                    self._raise_for(conf, "certConf")
            if mismatch:
                raise CAError("the CA returned a certificate for another public key")
        return IssuedCertificate(certificate=cert_der, chain=chain or self.trust_anchors())

    def _sender_kid(self) -> bytes | None:
        if isinstance(self.protection, MacProtection):
            return self.protection.reference
        return subject_key_id(self.protection.certificate)

    async def _until_issued(self, http: aiohttp.ClientSession, tx: Transaction, response: Response) -> Response:
        deadline = time.monotonic() + self.poll_seconds
        while True:
            if response.kind in ("cp", "ip"):
                status = int(response.body["response"][0]["status"]["status"])
                if status != 3:
                    return response
                req_id = int(response.body["response"][0]["certReqId"])
            elif response.kind == "pollRep":
                req_id = int(response.body[0]["certReqId"])
                wait = max(0, int(response.body[0]["checkAfter"]))
                if time.monotonic() + wait > deadline:
                    raise CAError(f"the CA has not issued the certificate yet (waiting; retry after {wait} s)")
                await asyncio.sleep(wait)
            else:
                self._raise_for(response, self.request_type)
            if time.monotonic() > deadline:
                raise CAError("the CA has not issued the certificate yet (waiting)")
            response = await self._exchange(http, tx, messages.poll_req_body(req_id), first=False)

    def _certificate(self, response: Response) -> tuple[bytes, int, list[bytes]]:
        rep = response.body["response"][0]
        status = int(rep["status"]["status"])
        if status not in (0, 1):
            raise CAError(f"the CA refused: {messages.status_text(rep['status'])}")
        pair = rep["certifiedKeyPair"]
        if not pair.isValue or pair["certOrEncCert"].getName() != "certificate":
            raise CAError("the CA's response carries no certificate")
        cert_der = der.content(encoder.encode(pair["certOrEncCert"]["certificate"]))  # drop the [0] tag
        chain = [encoder.encode(c) for c in response.body["caPubs"]] if response.body["caPubs"].isValue else []
        return cert_der, int(rep["certReqId"]), chain

    @staticmethod
    def _implicitly_confirmed(response: Response) -> bool:
        info = response.message["header"]["generalInfo"]
        return info.isValue and any(str(i["infoType"]) == "1.3.6.1.5.5.7.4.13" for i in info)

    @staticmethod
    def _raise_for(response: Response, step: str) -> None:
        if response.kind == "error":
            raise CAError(f"the CA answered {step} with an error: "
                          f"{messages.status_text(response.body['pKIStatusInfo'])}")
        raise CAError(f"unexpected CMP answer to {step}: {response.kind}")

    # --- transport -------------------------------------------------------------------------

    async def _exchange(self, http: aiohttp.ClientSession, tx: Transaction, body: Any, *, first: bool) -> Response:
        alg_oid, params = self.protection.algorithm()
        header = tx.header(alg_oid, params, first=first)
        extra = [self.protection.certificate] if isinstance(self.protection, SignatureProtection) else []
        request = messages.encode_message(header, body, lambda part: self.protection.protect(params, part), extra)
        try:
            async with http.post(self.url, data=request, headers={"Content-Type": CONTENT_TYPE}) as resp:
                data = await _read_limited(resp.content)
                if resp.status != 200 and not data:
                    raise CAError(f"the CMP server answered HTTP {resp.status}")
        except (TimeoutError, aiohttp.ClientError) as exc:
            raise CAError(f"cannot reach the CMP server: {type(exc).__name__}") from None
        response = messages.decode_response(data)
        self._check(tx, response)
        return response

    def _check(self, tx: Transaction, response: Response) -> None:
        header = response.message["header"]
        if not header["transactionID"].isValue or bytes(header["transactionID"]) != tx.transaction_id:
            raise CAError("CMP response belongs to another transaction")
        if response.protection is None:
            if response.kind == "error":  # unprotected errors are reported, never trusted for anything else
                self._raise_for(response, "the request")
            raise CAError("CMP response is not protected")
        if not header["recipNonce"].isValue or bytes(header["recipNonce"]) != tx.last_nonce:
            raise CAError("CMP response does not answer our request (recipNonce)")
        self.protection.verify(response.alg_oid or "", response.alg_params, response.protected_part,
                               response.protection, response.extra_certs)
        tx.recip_nonce = bytes(header["senderNonce"]) if header["senderNonce"].isValue else None


async def _read_limited(content: aiohttp.StreamReader) -> bytes:
    """The whole body, up to MAX_RESPONSE bytes. ``read(n)`` returns what has arrived so far,
    so one call would cut an answer that comes in more than one piece."""
    data = bytearray()
    while chunk := await content.read(MAX_RESPONSE + 1 - len(data)):
        data += chunk
        if len(data) > MAX_RESPONSE:
            raise CAError("CMP response too large")
    return bytes(data)


def _cert_hash(cert_der: bytes) -> bytes:
    """certHash: the hash of the certificate's own signature algorithm (RFC 4210 §5.3.18)."""
    algo = asn1_x509.Certificate.load(cert_der)["signature_algorithm"].hash_algo
    return _HASH_OF_SIG.get(algo, hashlib.sha256)(cert_der).digest()
