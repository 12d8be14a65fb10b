"""``validates/validSign`` and ``validates/validCert``: parse, hand to the engine, shape the answer.

Every field is checked here with the ``Body`` getters (type, Base64 strictness, sizes, digest
lengths) before any byte reaches a parser; whatever pyHanko cannot read is a 400 with a
fixed text (:class:`~extensions.validates.errors.BadDocument`), never a 500.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime
from typing import Any, TypeVar

from aiohttp import web
from asn1crypto import crl, ocsp, x509

from extensions.validates import indications, times
from extensions.validates.cades import HASHES, Detached, validate_cms
from extensions.validates.certs import USAGES, Supplied, validate_cert, validation_info
from extensions.validates.engine import Lane, ValidationEngine
from extensions.validates.errors import BadDocument
from extensions.validates.gate import RETRY_AFTER_SECONDS, Busy
from extensions.validates.outcome import SignatureOutcome
from extensions.validates.pades import validate_pdf
from extensions.validates.request import Request
from extensions.validates.report import etsi_report
from extensions.validates.xades import validate_xml
from rssp.api.call import Call
from rssp.api.parse import Body, decode_b64, decode_certificates, decode_digests, encode_b64
from rssp.errors import CSCError, invalid_param, invalid_request, missing_param

log = logging.getLogger("extensions.validates")

ENGINE = "validates.engine"  # key in Services.extras
T = TypeVar("T")
REPORTS = ("none", "simple", "etsi")
MAX_REVOCATION_BYTES = 4 * 1024 * 1024  # one CRL or OCSP response sent in a validCert request


def _engine(call: Call) -> ValidationEngine:
    return call.services.extras[ENGINE]


def too_large() -> CSCError:
    return CSCError(413, "invalid_request", "Document too large")


def parse_time(body: Body) -> datetime | None:
    value = body.string("validationTime", max_len=64)
    if value is None:
        return None
    moment = times.parse_time(value)
    if moment is None:
        raise invalid_param("validationTime")
    return moment


def binary(body: Body, name: str, limit: int) -> bytes | None:
    """A Base64 field holding a document or signature, at most ``limit`` bytes once decoded."""
    value = body.data.get(name)
    if value is None:
        return None
    if not isinstance(value, str):
        raise missing_param("string", name)
    if len(value) > (limit + 2) // 3 * 4 + 4:
        raise too_large()
    data = decode_b64(value, error=f"Invalid Base64 {name} parameter")
    if len(data) > limit:
        raise too_large()
    return data


def parse_digests(body: Body) -> Detached | None:
    value = body.data.get("documentDigests")
    if value is None:
        return None
    if not isinstance(value, dict):
        raise invalid_param("documentDigests")
    inner = Body(value)
    hashes = inner.string_list("hashes", required=True, max_items=100)
    oid = inner.required_string("hashAlgorithmOID", max_len=64)
    if oid not in HASHES:
        raise invalid_param("hashAlgorithmOID")
    digests = decode_digests(hashes or [], HASHES[oid], unique=False, empty=invalid_param("hashes"))
    return Detached(digests=digests, hash_oid=oid)


# a ContentInfo starts with SEQUENCE (any length form) and the signedData OID: 1.2.840.113549.1.7.2
SIGNED_DATA_OID = b"\x06\x09\x2a\x86\x48\x86\xf7\x0d\x01\x07\x02"


def sniff(data: bytes) -> str:
    """What a ``document`` is: CMS (DER or BER), a PDF (header in the first KiB, as readers
    allow), or XML (XAdES, :mod:`.xades`). CMS first: an attached signature over a PDF
    (``.pdf.p7m``) has ``%PDF-`` within its first KiB too, but it starts with a SEQUENCE holding
    the signedData OID. XML with a declaration before the PDF test: its text may name ``%PDF-``."""
    if data[:1] == b"\x30" and SIGNED_DATA_OID in data[:16]:
        return "cms"
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:5] == b"<?xml" or data[:2] in (b"\xff\xfe", b"\xfe\xff"):
        return "xml"  # UTF-8 with a declaration, or UTF-16 (its byte order mark)
    if b"%PDF-" in data[:1024]:
        return "pdf"
    if data[:1] == b"\x30":
        return "cms"
    if data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1] == b"<":
        return "xml"
    return "unknown"


@dataclass(frozen=True)
class SignRequest:
    document: bytes | None
    signature: bytes | None
    detached: Detached | None
    moment: datetime | None
    report: str
    with_info: bool


def parse_valid_sign(body: Body, limit: int) -> SignRequest:
    moment = parse_time(body)  # the small fields first: a wrong one costs no Base64 decoding
    report = body.choice("returnReport", REPORTS, "simple")
    with_info = body.boolean("returnValidationInfo")
    body.string("lang", max_len=35)
    digests = parse_digests(body)
    document = binary(body, "document", limit)
    signature = binary(body, "signature", limit)
    if digests is not None and signature is None:
        raise missing_param("string", "signature")  # digests only make sense with a detached signature
    if signature is None and document is None:
        raise missing_param("string", "document")
    detached = None
    if signature is not None:
        if document is None and digests is None:
            raise missing_param("string", "document")
        detached = Detached(document=document) if document is not None else digests
    return SignRequest(document, signature, detached, moment, report, with_info)


async def _run_sign(req: Request, parsed: SignRequest) -> list[SignatureOutcome]:
    if parsed.signature is not None:
        if sniff(parsed.signature) == "xml":  # a detached XAdES signature
            return await validate_xml(req, parsed.signature, parsed.detached)
        return await validate_cms(req, parsed.signature, parsed.detached)
    if parsed.document is None:  # parse_valid_sign refuses a request with neither
        raise missing_param("string", "document")
    kind = sniff(parsed.document)
    if kind == "pdf":
        return await validate_pdf(req, parsed.document)
    if kind == "cms":
        return await validate_cms(req, parsed.document, None)
    if kind == "xml":
        return await validate_xml(req, parsed.document, None)
    raise BadDocument("the document is neither a PDF, a CMS signature nor XML")


def _certificates(outcomes: list[SignatureOutcome]) -> list[x509.Certificate]:
    """The certificates the answers rest on: each signer's validated path (or its certificate)."""
    out: list[x509.Certificate] = []
    for outcome in outcomes:
        status = outcome.result.api_status if outcome.result is not None else None
        if status is None:
            continue
        path = status.validation_path
        out.extend(path.iter_certs(include_root=True) if path is not None else [status.signing_cert])
    return out


def busy() -> CSCError:
    return CSCError(503, "temporarily_unavailable", "Too many validations in progress; try again later",
                    headers={"Retry-After": str(RETRY_AFTER_SECONDS)})


async def run(call: Call, work: Callable[[Lane], Awaitable[T]]) -> T:
    """``work`` on a validation thread, admitted per caller (the token's user); 503 when there is no room."""
    caller = call.principal.user_id if call.principal is not None else (call.ip or "")
    try:
        return await _engine(call).run(caller, work)
    except Busy:
        raise busy() from None


async def valid_sign(call: Call) -> web.Response:
    engine = _engine(call)
    parsed = parse_valid_sign(call.body, engine.settings.max_document_bytes)

    async def work(lane: Lane) -> tuple[list[SignatureOutcome], list[dict[str, Any]], bytes | None, dict[str, Any]]:
        req = engine.request(lane, parsed.moment)
        outcomes = await _run_sign(req, parsed)
        report = etsi_report(outcomes) if parsed.report == "etsi" else None
        views = [o.view() for o in outcomes]  # here: whatever reading a certificate costs is inside the guard
        return outcomes, views, report, validation_info(req, _certificates(outcomes)) if parsed.with_info else {}

    try:
        outcomes, views, report, info = await run(call, work)
    except BadDocument as exc:
        raise invalid_request(str(exc)) from None
    except CSCError:
        raise
    except Exception:  # noqa: BLE001 - a document pyHanko chokes on is the client's problem, not a 500
        log.exception("validSign: validation failed on malformed input")
        raise invalid_request("The document or signature could not be processed") from None
    out: dict[str, Any] = {"indication": indications.overall(o.indication.indication for o in outcomes)}
    if parsed.report != "none":
        out["signatures"] = views
    if parsed.with_info:
        out["validationInfo"] = info
    if report is not None:
        out["report"] = encode_b64(report)
    return web.json_response(out)


def parse_certificates(body: Body, limit: int) -> list[x509.Certificate]:
    values = body.string_list("certificates", required=True, max_items=limit)
    return decode_certificates(values, b64_error="Invalid Base64 certificates parameter")


def parse_revocation(body: Body, limit: int) -> Supplied:
    """``crls`` and ``ocspResponses``: Base64 DER, parsed here (a bad one is a 400 naming the field)."""
    out = Supplied()
    for name, kind, target in (("crls", crl.CertificateList, out.crls), ("ocspResponses", ocsp.OCSPResponse,
                                                                          out.ocsps)):
        for value in body.string_list(name, max_items=limit) or []:
            der = decode_b64(value, error=f"Invalid Base64 {name} parameter")
            if len(der) > MAX_REVOCATION_BYTES:
                raise too_large()
            try:
                parsed = kind.load(der, strict=True)
                if kind is crl.CertificateList:
                    parsed["tbs_cert_list"]["issuer"].native  # noqa: B018 - force the parse of the header
                elif parsed["response_status"].native != "successful" or parsed.basic_ocsp_response is None:
                    raise ValueError("not a successful basic OCSP response")
            except Exception:  # noqa: BLE001 - untrusted input
                raise invalid_param(name) from None
            target.append(parsed)
    return out


async def valid_cert(call: Call) -> web.Response:
    engine = _engine(call)
    body = call.body
    moment = parse_time(body)
    usage = body.choice("usage", USAGES, "signature")
    body.string("lang", max_len=35)
    certs = parse_certificates(body, engine.settings.max_certificates)
    supplied = parse_revocation(body, engine.settings.max_certificates)

    async def work(lane: Lane) -> dict[str, Any]:
        result = await validate_cert(engine.request(lane, moment), certs[0], certs[1:], usage, supplied)
        return result.view()

    try:
        view = await run(call, work)
    except CSCError:
        raise
    except Exception:  # noqa: BLE001 - a certificate certvalidator chokes on is the client's problem, not a 500
        log.exception("validCert: validation failed on malformed input")
        raise invalid_param("certificates") from None
    return web.json_response(view)
