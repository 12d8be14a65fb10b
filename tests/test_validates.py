"""Validation service (DESIGN §3.2 "Validation"): validates/validSign and validates/validCert.

A production instance (``rssp init --production``) trusts the root of the corpus PKI
(tests/validation_corpus.py: certomancer, OCSP and CRLs served by its animator on a
loopback port) through ``[validation] trust_anchors``; the corpus is signed by pyHanko at
every PAdES level and as CAdES, with good, revoked, expired, untrusted and offline signers.
Every expected answer is also checked against pyHanko's own (non-AdES) validation of the
same file, so the service and the library agree on what is intact, trusted and revoked.

The development instance (``dep``) must trust its own test PKI out of the box.
"""

from __future__ import annotations

import base64
from contextlib import aclosing
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from io import BytesIO
from typing import Any

import pytest
from aiohttp import web
from asn1crypto import cms
from client import CSC
from deployment import Deployment
from lxml import etree
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_detached_cms, async_validate_pdf_signature
from pyhanko.sign.validation.generic_cms import async_validate_cms_signature
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.errors import RevokedError
from tsa_helpers import HttpServer, ServerThread
from validation_corpus import (TEXT, Corpus, ValidationPki, b64, build_corpus, counting_animator, sha256,
                               validation_instance)

from rssp.devpki import free_port

MAX_DOCUMENT = 200_000
SHA256_OID = "2.16.840.1.101.3.4.2.1"
SHA384_OID = "2.16.840.1.101.3.4.2.2"


@dataclass
class Env:
    dep: Deployment
    corpus: Corpus
    hits: dict[str, int]
    pki: ValidationPki
    thread: ServerThread
    prefix: str


@pytest.fixture(scope="module")
def venv(tmp_path_factory):
    base = tmp_path_factory.mktemp("validates")
    thread = ServerThread()
    port = free_port()
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
    hits: dict[str, int] = {}
    server = counting_animator(thread, pki, port, hits)
    try:
        corpus = build_corpus(pki)
        dep = validation_instance(base / "instance", pki, {
            "max_document_bytes": MAX_DOCUMENT,
            # the corpus PKI and the 'offline' signer's sources are on loopback: allow exactly them
            "fetch_allow": [f"http://127.0.0.1:{port}/", f"{pki.dead_url}/"]})
        corpus.wait_for_late_revocation()
        try:
            yield Env(dep, corpus, hits, pki, thread, f"http://127.0.0.1:{port}")
        finally:
            dep.stop()
    finally:
        server.close()
        thread.close()


@pytest.fixture
async def val(http, venv) -> Val:
    csc = CSC(http, venv.dep)
    return Val(csc, venv.corpus, await csc.token("alice"))


class Val:
    def __init__(self, csc: CSC, corpus: Corpus, token: str) -> None:
        self.csc, self.corpus, self.token = csc, corpus, token

    async def call(self, method: str, body: dict[str, Any], status: int = 200) -> dict[str, Any]:
        got, data = await self.csc.call(method, body, self.token)
        assert got == status, data
        return data

    async def sign(self, **body: Any) -> dict[str, Any]:
        return await self.call("validates/validSign", body)

    async def doc(self, name: str, **extra: Any) -> dict[str, Any]:
        return await self.sign(document=b64(self.corpus.docs[name]), **extra)

    async def cert(self, label: str, **extra: Any) -> dict[str, Any]:
        chain = [b64(c.dump()) for c in (self.corpus.certs[label], *self.corpus.chain(label))]
        return await self.call("validates/validCert", {"certificates": chain, **extra})


def gtime(moment: datetime) -> str:
    return moment.astimezone(UTC).strftime("%Y%m%d%H%M%SZ")


def pyhanko_context(corpus: Corpus, moment: datetime | None = None) -> ValidationContext:
    """pyHanko's classic validation, hard-fail revocation, against the corpus root.

    Use it as ``async with aclosing(pyhanko_context(...)) as context``: the context owns the
    aiohttp session of its fetchers, and only its ``aclose`` closes it (else aiohttp warns
    "Unclosed client session" when the test run ends)."""
    return ValidationContext(trust_roots=[corpus.root], other_certs=[corpus.interm], allow_fetching=True,
                             revocation_mode="hard-fail", moment=moment, retroactive_revinfo=moment is not None)


async def pyhanko_pdf(corpus: Corpus, name: str, moment: datetime | None = None) -> list[Any]:
    reader = PdfFileReader(BytesIO(corpus.docs[name]))
    statuses = []
    for sig in reader.embedded_regular_signatures:
        async with aclosing(pyhanko_context(corpus, moment)) as context:
            statuses.append(await async_validate_pdf_signature(sig, context))
    return statuses


# ============================================================================ PAdES

PADES = [  # document, indication, sub-indication, level, pyHanko's bottom line (validation now)
    ("pades-B-B", "TOTAL_PASSED", None, "B-B", True),
    ("pades-B-T", "TOTAL_PASSED", None, "B-T", True),
    ("pades-B-LT", "TOTAL_PASSED", None, "B-LT", True),
    ("pades-B-LTA", "TOTAL_PASSED", None, "B-LTA", True),
    ("pades-crl-only", "TOTAL_PASSED", None, "B-B", True),
    ("pades-revoked-ca", "INDETERMINATE", "REVOKED_CA_NO_POE", "B-B", False),  # its issuing CA is revoked
    ("pades-revoked-late", "TOTAL_PASSED", None, "B-T", False),  # passes with the timestamp as POE
    ("pades-revoked-early", "INDETERMINATE", "REVOKED_NO_POE", "B-T", False),
    ("pades-expired", "INDETERMINATE", "OUT_OF_BOUNDS_NO_POE", "B-B", False),
    ("pades-untrusted", "INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND", "B-B", False),
    ("pades-tampered", "TOTAL_FAILED", "HASH_FAILURE", "B-B", False),
    ("pades-offline", "INDETERMINATE", "TRY_LATER", "B-B", False),
    ("pades-broken-cms", "TOTAL_FAILED", "FORMAT_FAILURE", "B-B", None),  # pyHanko cannot even read it
    ("pades-modified", "INDETERMINATE", "SIG_CONSTRAINTS_FAILURE", "B-B", False),  # page changed by an update
]


@pytest.mark.parametrize(("name", "indication", "sub", "level", "pyhanko_ok"), PADES, ids=[p[0] for p in PADES])
async def test_pades_corpus(val, name, indication, sub, level, pyhanko_ok):
    body = await val.doc(name)
    assert body["indication"] == indication, body
    [sig] = body["signatures"]
    assert (sig["indication"], sig.get("subIndication"), sig["level"], sig["format"]) == \
        (indication, sub, level, "PAdES"), sig
    assert "report" not in body and "validationInfo" not in body
    if pyhanko_ok is None:
        # pyHanko's reader refuses the signature outright: its /Contents is no CMS (asn1crypto cannot parse it)
        with pytest.raises(ValueError, match="^Error parsing asn1crypto.cms.ContentInfo"):
            await pyhanko_pdf(val.corpus, name)
        return
    [status] = await pyhanko_pdf(val.corpus, name)
    assert status.bottom_line is pyhanko_ok, status.summary()
    if sub == "HASH_FAILURE":
        assert not status.intact
    if sub == "SIG_CONSTRAINTS_FAILURE":
        assert status.intact and status.valid and status.docmdp_ok is False
    if sub == "NO_CERTIFICATE_CHAIN_FOUND":
        assert status.intact and status.valid and not status.trusted
    if sub == "REVOKED_CA_NO_POE":
        assert status.intact and status.valid and status.revocation_details.ca_revoked
    if indication == "TOTAL_PASSED" or sub in ("REVOKED_NO_POE", "REVOKED_CA_NO_POE", "OUT_OF_BOUNDS_NO_POE"):
        assert sig["signer"]["subjectDN"].startswith("CN=rssp corpus"), sig


async def test_pades_fields(val):
    body = await val.doc("pades-B-LTA")
    [sig] = body["signatures"]
    cert = val.corpus.certs["good"]
    assert sig["signatureID"] == "Signature1"
    assert sig["signer"] == {"subjectDN": "CN=rssp corpus good,O=rssp validation corpus,C=JP",
                             "issuerDN": "CN=rssp corpus interm,O=rssp validation corpus,C=JP",
                             "serialNumber": format(cert.serial_number, "x")}
    assert sig["certStatus"] == "valid"
    kinds = [(t["type"], t["indication"], t["tsa"]) for t in sig["timestamps"]]
    assert kinds == [("signature", "TOTAL_PASSED", "CN=rssp corpus tsa,O=rssp validation corpus,C=JP"),
                     ("archive", "TOTAL_PASSED", "CN=rssp corpus tsa,O=rssp validation corpus,C=JP")]
    signing = datetime.strptime(sig["signingTime"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    best = datetime.strptime(sig["bestSignatureTime"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    assert abs(signing - best) < timedelta(minutes=5) and best <= datetime.now(UTC)


async def test_pades_revoked_after_timestamp_is_revoked_now(val):
    """The POE matters: the same signer fails validCert now, and pyHanko agrees at both times."""
    cert = await val.cert("revoked-late")
    assert (cert["status"], cert["subIndication"]) == ("revoked", "REVOKED_NO_POE")
    [sig] = (await val.doc("pades-revoked-late"))["signatures"]
    gen_time = datetime.strptime(sig["timestamps"][0]["genTime"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    revoked = datetime.strptime(cert["revocation"]["time"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    assert gen_time < revoked
    [at_timestamp] = await pyhanko_pdf(val.corpus, "pades-revoked-late", moment=gen_time)
    assert at_timestamp.bottom_line, at_timestamp.summary()


def parse_gtime(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


async def test_validation_time_before_revocation(val):
    """``validationTime`` decides: ``revoked-late`` signed this B-B document (no timestamp, so
    no proof of existence) seconds before its certificate was revoked. Validated now, it is
    REVOKED_NO_POE; validated at a moment between the signing and the revocation, it passed.

    That moment is well defined with the revocation data available today: the OCSP response
    (and CRL) fetched now says "revoked since T", which says the certificate was not revoked
    before T; both rssp and pyHanko accept such retroactive revocation information when a
    validation time is given. (The ``expired`` signer's document would not do: it was signed
    after the expiry, so a validation time inside the validity would predate the signature.)"""
    name = "pades-revoked-late-B-B"
    [now] = (await val.doc(name))["signatures"]
    assert (now["indication"], now["subIndication"], now["certStatus"], now["level"]) == \
        ("INDETERMINATE", "REVOKED_NO_POE", "revoked", "B-B"), now
    revoked = parse_gtime((await val.cert("revoked-late"))["revocation"]["time"])
    moment = revoked - timedelta(seconds=2)
    assert parse_gtime(now["signingTime"]) <= moment < revoked  # signed before that moment
    body = await val.doc(name, validationTime=gtime(moment))
    [then] = body["signatures"]
    assert (body["indication"], then["certStatus"], then["level"]) == ("TOTAL_PASSED", "valid", "B-B"), then
    assert then["bestSignatureTime"] == gtime(moment)
    assert (await val.cert("revoked-late", validationTime=gtime(moment)))["status"] == "valid"
    # pyHanko, same moments
    [ph_then] = await pyhanko_pdf(val.corpus, name, moment=moment)
    assert ph_then.bottom_line, ph_then.summary()
    [ph_now] = await pyhanko_pdf(val.corpus, name)
    assert not ph_now.bottom_line and ph_now.revoked and not ph_now.revocation_details.ca_revoked


async def test_two_signatures_and_incremental_update(val):
    body = await val.doc("pades-two")
    assert body["indication"] == "TOTAL_PASSED"
    assert [(s["signatureID"], s["level"]) for s in body["signatures"]] == [("Signature1", "B-T"),
                                                                             ("Signature2", "B-T")]
    statuses = await pyhanko_pdf(val.corpus, "pades-two")
    assert all(s.bottom_line for s in statuses)


async def test_report_none_and_validation_info(val):
    body = await val.doc("pades-B-B", returnReport="none")
    assert body == {"indication": "TOTAL_PASSED"}
    body = await val.doc("pades-B-B", returnValidationInfo=True)
    info = body["validationInfo"]
    assert info["ocsp"] and set(info) == {"ocsp", "crl", "certificates"}
    assert b64(val.corpus.certs["good"].dump()) in info["certificates"]
    assert b64(val.corpus.root.dump()) in info["certificates"]
    # the OCSP response answers for the signer
    from asn1crypto import ocsp

    resp = ocsp.OCSPResponse.load(base64.b64decode(info["ocsp"][0]))
    assert resp["response_status"].native == "successful"


async def test_etsi_report(val):
    body = await val.doc("pades-B-LTA", returnReport="etsi")
    xml = etree.fromstring(base64.b64decode(body["report"]))
    ns = {"vr": "http://uri.etsi.org/19102/v1.2.1#"}
    assert etree.QName(xml).localname == "ValidationReport"
    mains = xml.findall(".//vr:SignatureValidationReport/vr:SignatureValidationStatus/vr:MainIndication", ns)
    assert [m.text for m in mains] == ["urn:etsi:019102:mainindication:total-passed"]
    process = xml.find(".//vr:SignatureValidationProcessID", ns)
    assert process.text == "urn:etsi:019102:validationprocess:LTA"
    assert xml.findall(".//vr:ValidationObject", ns)
    body = await val.doc("pades-revoked-early", returnReport="etsi")
    xml = etree.fromstring(base64.b64decode(body["report"]))
    subs = [s.text for s in xml.findall(".//vr:SubIndication", ns)]
    assert subs == ["urn:etsi:019102:subindication:REVOKED_NO_POE"]
    body = await val.sign(document=b64(val.corpus.docs["cades-attached-B-T"]), returnReport="etsi")
    xml = etree.fromstring(base64.b64decode(body["report"]))
    assert xml.find(".//vr:MainIndication", ns).text == "urn:etsi:019102:mainindication:total-passed"


# ============================================================================ CAdES

async def pyhanko_cms(corpus: Corpus, signed: cms.SignedData, detached: bytes | None = None) -> Any:
    """pyHanko's classic validation of a CMS signature (``detached``: its signed data)."""
    async with aclosing(pyhanko_context(corpus)) as context:
        if detached is None:
            return await async_validate_cms_signature(signed, validation_context=context)
        return await async_validate_detached_cms(detached, signed, signer_validation_context=context)


@pytest.mark.parametrize(("name", "level"), [("cades-attached", "B-B"), ("cades-attached-B-T", "B-T"),
                                             ("cades-revoked-late", "B-T")])
async def test_cades_attached(val, name, level):
    body = await val.doc(name)
    [sig] = body["signatures"]
    assert (body["indication"], sig["format"], sig["level"]) == ("TOTAL_PASSED", "CAdES-attached", level), sig
    signed = cms.ContentInfo.load(val.corpus.docs[name])["content"]
    status = await pyhanko_cms(val.corpus, signed)
    assert status.intact and status.valid
    assert status.trusted is (name != "cades-revoked-late")  # pyHanko's classic API ignores the POE


async def test_cades_bad_signature_value(val):
    body = await val.doc("cades-bad-signature")
    assert (body["indication"], body["signatures"][0]["subIndication"]) == ("TOTAL_FAILED", "SIG_CRYPTO_FAILURE")
    signed = cms.ContentInfo.load(val.corpus.docs["cades-bad-signature"])["content"]
    status = await pyhanko_cms(val.corpus, signed)
    assert status.intact and not status.valid


async def test_cades_detached_with_document_and_digests(val):
    signature, document = val.corpus.detached["cades-detached"]
    signed = cms.ContentInfo.load(signature)["content"]
    ok = await pyhanko_cms(val.corpus, signed, document)
    bad = await pyhanko_cms(val.corpus, signed, document + b"!")
    assert ok.bottom_line and not bad.intact
    body = await val.sign(signature=b64(signature), document=b64(document))
    assert body["indication"] == "TOTAL_PASSED"
    assert (body["signatures"][0]["format"], body["signatures"][0]["level"]) == ("CAdES-detached", "B-T")
    body = await val.sign(signature=b64(signature), documentDigests={"hashes": [b64(sha256(document))],
                                                                     "hashAlgorithmOID": SHA256_OID})
    assert body["indication"] == "TOTAL_PASSED"
    # wrong detached data: another document, or another digest
    body = await val.sign(signature=b64(signature), document=b64(document + b"!"))
    assert (body["indication"], body["signatures"][0]["subIndication"]) == ("TOTAL_FAILED", "HASH_FAILURE")
    body = await val.sign(signature=b64(signature), documentDigests={"hashes": [b64(sha256(b"other"))],
                                                                     "hashAlgorithmOID": SHA256_OID})
    assert (body["indication"], body["signatures"][0]["subIndication"]) == ("TOTAL_FAILED", "HASH_FAILURE")


# ============================================================================ validCert

async def test_valid_cert_good(val):
    body = await val.cert("good")
    assert (body["indication"], body["status"]) == ("TOTAL_PASSED", "valid")
    assert body["chain"] == [f"CN=rssp corpus {n},O=rssp validation corpus,C=JP" for n in ("good", "interm", "root")]
    assert body["trustAnchor"] == "CN=rssp corpus root,O=rssp validation corpus,C=JP"
    assert body["revocation"] == {"source": "ocsp"}
    assert body["validationInfo"]["ocsp"]
    assert (await val.cert("crl-only"))["revocation"] == {"source": "crl"}
    async with aclosing(pyhanko_context(val.corpus)) as context:
        validator = CertificateValidator(val.corpus.certs["good"], validation_context=context)
        await validator.async_validate_usage({"digital_signature"})  # pyHanko agrees


async def test_valid_cert_ca_certificate_alone(val):
    """A certificate issued by the anchor itself needs no chain from the client."""
    body = await val.call("validates/validCert", {"certificates": [b64(val.corpus.certs["interm"].dump())]})
    assert body["indication"] == "TOTAL_PASSED"


async def test_valid_cert_revoked(val):
    body = await val.cert("revoked-early")
    assert (body["indication"], body["subIndication"], body["status"]) == \
        ("INDETERMINATE", "REVOKED_NO_POE", "revoked")
    assert body["revocation"]["reason"] == "key_compromise" and body["revocation"]["source"] == "ocsp"
    revoked = datetime.strptime(body["revocation"]["time"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    assert revoked < datetime.now(UTC) - timedelta(days=9)
    # valid at a validationTime before the revocation
    before = await val.cert("revoked-early", validationTime=gtime(revoked - timedelta(days=2)))
    assert (before["indication"], before["status"]) == ("TOTAL_PASSED", "valid"), before
    iso = await val.cert("revoked-early", validationTime=(revoked - timedelta(days=2)).isoformat())
    assert iso["status"] == "valid"


async def test_valid_cert_issuing_ca_revoked(val):
    """A signer whose own certificate is fine but whose issuing CA was revoked by its issuer
    (EN 319 102-1 5.2.6 X.509 certificate validation: REVOKED_CA_NO_POE); the revocation
    reported is the CA's, and pyHanko's path validation fails on the same CA."""
    body = await val.cert("under-revoked-ca")
    assert (body["indication"], body["subIndication"], body["status"]) == \
        ("INDETERMINATE", "REVOKED_CA_NO_POE", "revoked"), body
    # the CA's revocation, as the intermediate's OCSP responder reported it
    assert (body["revocation"]["reason"], body["revocation"]["source"]) == ("ca_compromise", "ocsp"), body
    revoked = datetime.strptime(body["revocation"]["time"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
    assert revoked < datetime.now(UTC) - timedelta(days=9)
    assert body["chain"] == [f"CN=rssp corpus {n},O=rssp validation corpus,C=JP"
                             for n in ("under-revoked-ca", "revoked-ca", "interm", "root")]
    ca = await val.cert("revoked-ca")  # the CA itself: its own revocation
    assert (ca["indication"], ca["subIndication"], ca["status"]) == ("INDETERMINATE", "REVOKED_NO_POE", "revoked")
    assert ca["revocation"] == body["revocation"]
    async with aclosing(pyhanko_context(val.corpus)) as context:
        validator = CertificateValidator(val.corpus.certs["under-revoked-ca"],
                                         intermediate_certs=val.corpus.chain("under-revoked-ca"),
                                         validation_context=context)
        with pytest.raises(RevokedError) as raised:
            await validator.async_validate_usage({"digital_signature"})
    assert not raised.value.is_ee_cert  # pyHanko: the revoked certificate is not the end entity


async def test_valid_cert_expired_unknown_offline(val):
    body = await val.cert("expired")
    assert (body["indication"], body["subIndication"], body["status"]) == \
        ("INDETERMINATE", "OUT_OF_BOUNDS_NO_POE", "expired")
    body = await val.call("validates/validCert", {"certificates": [b64(val.corpus.certs["rogue-signer"].dump())]})
    assert (body["indication"], body["subIndication"], body["status"]) == \
        ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND", "unknown")
    assert "trustAnchor" not in body
    body = await val.cert("offline")
    assert (body["indication"], body["subIndication"], body["status"]) == ("INDETERMINATE", "TRY_LATER", "unknown")


async def test_valid_cert_usage(val):
    assert (await val.cert("tsa", usage="timestamp"))["indication"] == "TOTAL_PASSED"
    body = await val.cert("good", usage="timestamp")
    assert body["indication"] != "TOTAL_PASSED" and body["subIndication"] == "CHAIN_CONSTRAINTS_FAILURE"


# ============================================================================ revocation cache

async def test_revocation_is_fetched_once_and_cached(val, venv):
    await val.doc("pades-B-T")  # warm
    before = dict(venv.hits)
    for _ in range(3):
        assert (await val.doc("pades-B-T"))["indication"] == "TOTAL_PASSED"
        assert (await val.cert("good"))["indication"] == "TOTAL_PASSED"
    assert venv.hits == before, (before, venv.hits)


# ============================================================================ bad input

BAD = [
    ("not a PDF nor CMS", {"document": b64(b"hello, this is plain text")}, 400),
    ("XML", {"document": b64(b"<?xml version='1.0'?><doc/>")}, 400),
    ("a PDF with no signature", "unsigned-pdf", 400),
    ("a truncated PDF", "truncated-pdf", 400),
    ("truncated CMS", "truncated-cms", 400),
    ("CMS that is not SignedData", {"document": b64(cms.ContentInfo({"content_type": "data",
                                                                      "content": b"x"}).dump())}, 400),
    ("garbage Base64", {"document": "!!!not base64!!!"}, 400),
    ("Base64 with a space", {"document": "QUJD RA=="}, 400),
    ("document past max_document_bytes", {"document": b64(b"%PDF-1.7\n" + b"0" * MAX_DOCUMENT)}, 413),
    ("nothing to validate", {}, 400),
    ("a detached signature alone", "detached-alone", 400),
    ("digests without a signature", {"document": None, "documentDigests": {"hashes": [b64(b"0" * 32)],
                                                                          "hashAlgorithmOID": SHA256_OID}}, 400),
    ("digest of the wrong length", "digest-length", 400),
    ("digest algorithm not the signature's", "digest-algo", 400),
    ("attached CMS sent as detached signature", "attached-as-detached", 400),
    ("validationTime not a time", {"document": b64(b"%PDF-1.7"), "validationTime": "yesterday"}, 400),
    ("validationTime without a zone", {"document": b64(b"%PDF-1.7"), "validationTime": "2026-01-01T00:00:00"}, 400),
    ("returnReport unknown", {"document": b64(b"%PDF-1.7"), "returnReport": "xml"}, 400),
]


def bad_body(corpus: Corpus, spec: Any) -> dict[str, Any]:
    signature, document = corpus.detached["cades-detached"]
    if isinstance(spec, dict):
        return {k: v for k, v in spec.items() if v is not None}
    from validation_corpus import simple_pdf

    named: dict[str, dict[str, Any]] = {
        "unsigned-pdf": {"document": b64(simple_pdf())},
        "truncated-pdf": {"document": b64(corpus.docs["pades-B-B"][:2000])},
        "truncated-cms": {"document": b64(corpus.docs["cades-attached"][:-40])},
        "detached-alone": {"document": None, "signature": b64(signature)},
        "digest-length": {"signature": b64(signature), "documentDigests": {"hashes": [b64(b"0" * 31)],
                                                                            "hashAlgorithmOID": SHA256_OID}},
        "digest-algo": {"signature": b64(signature), "documentDigests": {"hashes": [b64(b"0" * 48)],
                                                                          "hashAlgorithmOID": SHA384_OID}},
        "attached-as-detached": {"signature": b64(corpus.docs["cades-attached"]), "document": b64(TEXT)},
    }
    return named[spec]


@pytest.mark.parametrize(("label", "spec", "status"), BAD, ids=[b[0] for b in BAD])
async def test_bad_input_valid_sign(val, label, spec, status):
    body = {k: v for k, v in bad_body(val.corpus, spec).items() if v is not None}
    got, data = await val.csc.call("validates/validSign", body, val.token)
    assert got == status, data
    assert set(data) == {"error", "error_description"} and data["error"] == "invalid_request", data


@pytest.mark.parametrize(("label", "certs"), [
    ("not a certificate", [b64(b"\x30\x03\x02\x01\x00")]),
    ("truncated certificate", "truncated"),
    ("garbage Base64", ["***"]),
    ("empty list", []),
])
async def test_bad_input_valid_cert(val, label, certs):
    if certs == "truncated":
        certs = [b64(val.corpus.certs["good"].dump()[:-10])]
    got, data = await val.csc.call("validates/validCert", {"certificates": certs}, val.token)
    assert got == 400 and data["error"] == "invalid_request", data


# ============================================================================ the development instance

async def test_dev_instance_trusts_its_test_pki(csc, dep):
    """``rssp init`` (development): the TSA certificates of the bundled PKI validate out of the box."""
    token = await csc.token("alice")
    status, info = await csc.call("info", {})
    assert {"validates/validSign", "validates/validCert"} <= set(info["methods"])
    status, tsas = await csc.call("timestamps/list", {"timestampInfo": True, "certificates": "chain"}, token)
    assert status == 200, tsas
    chain = tsas["timestampInfos"][0]["cert"]["certificates"]
    status, body = await csc.call("validates/validCert", {"certificates": chain, "usage": "timestamp"}, token)
    assert status == 200 and body["indication"] == "TOTAL_PASSED", body
    assert body["trustAnchor"] == "CN=rssp Development Root CA,O=rssp development PKI (not for production),C=JP"



async def test_dev_instance_trusts_its_local_ca(csc, dep):
    """A PDF signed through rssp itself (pyHanko's CSCSigner, a local-CA credential) validates out of the box."""
    from test_pyhanko import make_signer, sign

    signer, _manager, _recorder, session = await make_signer(dep, "p256")
    try:
        pdf = await sign(signer, "signed by rssp, validated by rssp")
    finally:
        await session.close()
    token = await csc.token("alice")
    status, body = await csc.call("validates/validSign", {"document": b64(pdf)}, token)
    assert status == 200 and body["indication"] == "TOTAL_PASSED", body
    assert body["signatures"][0]["signer"]["issuerDN"].startswith("CN=rssp Local CA"), body


# ============================================================================ the ETSI report, for every outcome

ALL_DOCS = [p[0] for p in PADES if p[0] != "pades-broken-cms"] + [
    "pades-two", "cades-attached", "cades-attached-B-T", "cades-revoked-late", "cades-bad-signature"]
MAIN = {"TOTAL_PASSED": "total-passed", "TOTAL_FAILED": "total-failed", "INDETERMINATE": "indeterminate"}


@pytest.mark.parametrize("name", ALL_DOCS)
async def test_etsi_report_for_every_outcome(val, name):
    """The XML report exists for passed, failed and indeterminate signatures alike, and agrees with the JSON."""
    body = await val.doc(name, returnReport="etsi")
    xml = etree.fromstring(base64.b64decode(body["report"]))
    ns = {"vr": "http://uri.etsi.org/19102/v1.2.1#"}
    reports = xml.findall("vr:SignatureValidationReport", ns)
    assert len(reports) == len(body["signatures"])
    for report, sig in zip(reports, body["signatures"], strict=True):
        main = report.find("vr:SignatureValidationStatus/vr:MainIndication", ns).text
        assert main == f"urn:etsi:019102:mainindication:{MAIN[sig['indication']]}"
        subs = [s.text for s in report.findall("vr:SignatureValidationStatus/vr:SubIndication", ns)]
        assert subs == ([f"urn:etsi:019102:subindication:{sig['subIndication']}"] if "subIndication" in sig else [])


# ============================================================================ the loop, and failures not cached

async def test_server_answers_while_validations_run(val):
    """Validation runs off the server's event loop: info answers while validSign calls are in flight."""
    import asyncio

    calls = [asyncio.ensure_future(val.doc("pades-B-LTA")) for _ in range(8)]
    await asyncio.sleep(0.05)
    status, info = await val.csc.call("info", {})
    assert status == 200
    assert not all(c.done() for c in calls), "validations finished before info answered: nothing to show"
    assert all(b["indication"] == "TOTAL_PASSED" for b in await asyncio.gather(*calls))


def revocation_proxy(venv: Env) -> HttpServer:
    """Something finally listening where the 'offline' signer's OCSP and CRL URLs point."""
    import aiohttp

    async def ocsp(request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session, session.post(
                f"{venv.prefix}/val/ocsp/interm", data=await request.read(),
                headers={"Content-Type": "application/ocsp-request"}) as resp:
            return web.Response(body=await resp.read(), content_type="application/ocsp-response")

    async def crl(_request: web.Request) -> web.Response:
        async with aiohttp.ClientSession() as session, session.get(
                f"{venv.prefix}/val/crls/interm/latest.crl") as resp:
            return web.Response(body=await resp.read(), content_type="application/pkix-crl")

    app = web.Application()
    app.router.add_post("/ocsp", ocsp)
    app.router.add_get("/crl", crl)
    port = int(venv.pki.dead_url.rsplit(":", 1)[1])
    server = HttpServer(venv.thread, app, port)
    server.start()
    return server


async def test_try_later_then_available(val, venv):
    """TRY_LATER means it: the failure is not cached, and once the responder answers, so does rssp.

    Runs last in this module: afterwards the 'offline' signer's status is cached as good."""
    assert (await val.cert("offline"))["subIndication"] == "TRY_LATER"
    proxy = revocation_proxy(venv)
    try:
        body = await val.cert("offline")
        assert (body["indication"], body["status"], body["revocation"]) == \
            ("TOTAL_PASSED", "valid", {"source": "ocsp"}), body
        assert (await val.doc("pades-offline"))["indication"] == "TOTAL_PASSED"
    finally:
        proxy.close()

