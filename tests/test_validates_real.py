"""validSign and validCert on documents made the way other software makes them (issue #13).

One test per defect the real-world corpus (tests/test_validates_realworld.py) showed, on
documents the tests build themselves (tests/realworld_docs.py, on the corpus PKI of
tests/validation_corpus.py), so that they run without the corpus. Two production instances
trust the corpus root: ``online`` fetches from the PKI's animator (and from the 'offline'
signer's dead responder, so that a fetch fails for real); ``offline`` may fetch nothing (no
``fetch_allow``: every fetch is refused, as for a public CA an operator did not list):
validation uses only what the document and the request carry.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from certomancer.integrations.aiohttp_animator import build_animator_app
from client import CSC
from deployment import Deployment, make_deployment_minimal
from lxml import etree
from ops_helpers import configure
from realworld_docs import build, crl_revoking, refused_certificate_cms, sourceless_certificate
from tsa_helpers import HttpServer, ServerThread
from validation_corpus import ValidationPki, b64, simple_pdf, validation_instance

from rssp.devpki import free_port


@dataclass
class Env:
    online: Deployment
    offline: Deployment
    pki: ValidationPki
    docs: dict[str, bytes]
    animator: HttpServer
    base: Path
    fetch_allow: list[str]


@pytest.fixture(scope="module")
def renv(tmp_path_factory):
    base = tmp_path_factory.mktemp("validates-real")
    thread = ServerThread()
    port = free_port()
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
    server = HttpServer(thread, build_animator_app(pki.config.pki_archs, with_web_ui=False), port)
    server.start()
    try:
        docs = build(pki, base)
        allow = [f"http://127.0.0.1:{port}/", f"{pki.dead_url}/"]
        online = validation_instance(base / "online", pki, {"fetch_allow": allow, "revocation_timeout_seconds": 2})
        offline = validation_instance(base / "offline", pki, {})
        try:
            yield Env(online, offline, pki, docs, server, base, allow)
        finally:
            online.stop()
            offline.stop()
    finally:
        server.close()
        thread.close()


class Client:
    def __init__(self, csc: CSC, token: str) -> None:
        self.csc, self.token = csc, token

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        status, answer = await self.csc.call(method, body, self.token)
        assert status == 200, (status, answer)
        return answer

    async def sign(self, document: bytes, **extra: Any) -> dict[str, Any]:
        return await self.call("validates/validSign", {"document": b64(document), **extra})


@pytest.fixture
async def online(http, renv) -> Client:
    csc = CSC(http, renv.online)
    return Client(csc, await csc.token("alice"))


@pytest.fixture
async def offline(http, renv) -> Client:
    csc = CSC(http, renv.offline)
    return Client(csc, await csc.token("alice"))


def summary(answer: dict[str, Any]) -> list[tuple[str, str, str | None]]:
    return [(s["signatureID"], s["indication"], s.get("subIndication")) for s in answer["signatures"]]


# ==================================================================================== PDF

async def test_unreadable_revision_degrades_and_says_so(online, renv):
    """A revision whose catalog cannot be read (a trailer naming an object no section holds) is
    not a broken document: the signature is validated and the answer says what was not checked."""
    answer = await online.sign(renv.docs["pdf-unreadable-revision"])
    assert summary(answer) == [("Signature1", "TOTAL_PASSED", None)], answer
    assert any("could not be analysed" in note for note in answer["signatures"][0]["notes"]), answer


async def test_pages_added_after_signing_fail_whatever_else(online, renv):
    """A page added after signing fails the signature (TOTAL_FAILED/FORMAT_FAILURE), even when
    the signer's responder is down: TRY_LATER would tell the client to retry a lost cause."""
    answer = await online.sign(renv.docs["pdf-page-added-offline"])
    assert (answer["indication"], summary(answer)) == \
        ("TOTAL_FAILED", [("Signature1", "TOTAL_FAILED", "FORMAT_FAILURE")]), answer


async def test_timestamp_in_a_sig_dictionary_is_a_document_timestamp(online, renv):
    """An RFC 3161 token under ``/Type /Sig`` (subfilter ETSI.RFC3161) is read as the document
    time-stamp it is, not as a broken signature."""
    answer = await online.sign(renv.docs["pdf-sig-typed-timestamp"])
    sig = answer["signatures"][0]
    assert (answer["indication"], sig["format"], sig["timestamps"][0]["indication"]) == \
        ("TOTAL_PASSED", "PAdES-DTS", "TOTAL_PASSED"), answer


async def test_etsi_report_never_fails_and_lists_every_signature(online, renv):
    """returnReport=etsi on a PDF whose first signature uses SHA3-256 (pyHanko's report generator
    has no URI for it): the same answer as the JSON, with a report for each signature."""
    doc = renv.docs["pdf-sha3-two"]
    simple = await online.sign(doc)
    etsi = await online.sign(doc, returnReport="etsi")
    assert summary(etsi) == summary(simple) == [("Signature1", "TOTAL_PASSED", None),
                                                ("Signature2", "TOTAL_PASSED", None)], etsi
    report = etree.fromstring(base64.b64decode(etsi["report"]))
    ns = {"vr": "http://uri.etsi.org/19102/v1.2.1#"}
    assert len(report.findall("vr:SignatureValidationReport", ns)) == 2
    assert b"xmldsig-more#sha3-256" in base64.b64decode(etsi["report"])


async def test_embedded_revocation_data_is_used_offline(offline, renv):
    """A B-LT PDF carries its OCSP responses and CRLs: with nothing fetched (the responder out of
    reach), they decide, as they would for a document received years later."""
    answer = await offline.sign(renv.docs["pdf-B-LT"])
    assert summary(answer) == [("Signature1", "TOTAL_PASSED", None)], answer


# ==================================================================================== CMS

async def test_p7m_over_a_pdf_is_cms(online, renv):
    """``.pdf.p7m``: an attached CMS whose content is a PDF is a CMS, not a PDF."""
    answer = await online.sign(renv.docs["p7m-over-pdf"])
    assert (answer["signatures"][0]["format"], summary(answer)) == \
        ("CAdES-attached", [("signature-1", "TOTAL_PASSED", None)]), answer


async def test_ber_indefinite_length_cms(online, renv):
    """``openssl cms -sign -stream`` writes indefinite lengths (BER), here followed by the zero
    padding a CMS cut out of a PDF's /Contents keeps: read as it came, padding ignored."""
    assert summary(await online.sign(renv.docs["cms-ber"])) == [("signature-1", "TOTAL_PASSED", None)]


async def test_several_signers_each_reported(online, renv):
    answer = await online.sign(renv.docs["cms-two-signers"])
    assert summary(answer) == [("signature-1", "TOTAL_PASSED", None), ("signature-2", "TOTAL_PASSED", None)]
    assert sorted(s["signer"]["subjectDN"] for s in answer["signatures"]) == \
        ["CN=rssp corpus crl-only,O=rssp validation corpus,C=JP", "CN=rssp corpus good,O=rssp validation corpus,C=JP"]


async def test_counter_signature_reported(online, renv):
    """An RFC 5652 counter-signature (no content-type attribute, which pyHanko requires) is a
    signature of its own: validated and reported after the one it countersigns."""
    answer = await online.sign(renv.docs["cms-countersigned"])
    assert summary(answer) == [("signature-1", "TOTAL_PASSED", None),
                               ("signature-1/countersignature-1", "TOTAL_PASSED", None)], answer
    assert answer["signatures"][1]["signer"]["subjectDN"].startswith("CN=rssp corpus crl-only")


async def test_rsa_with_sha3(online, renv):
    """RSA PKCS #1 v1.5 with SHA3-256 (an OID asn1crypto does not know) verifies."""
    assert summary(await online.sign(renv.docs["cms-rsa-sha3"])) == [("signature-1", "TOTAL_PASSED", None)]


async def test_certificate_cryptography_refuses_is_no_500(online, renv):
    """A signer certificate whose algorithm carries a NULL parameter (``cryptography`` refuses to
    parse it, asn1crypto does not): an answer naming it, never a 500."""
    answer = await online.sign(renv.docs["cms-null-params"])
    assert answer["signatures"][0]["signer"]["subjectDN"].startswith("CN=rssp corpus null params")
    _, cert = refused_certificate_cms(renv.pki)
    body = await online.call("validates/validCert", {"certificates": [b64(cert.dump())]})
    assert body["chain"][0].startswith("CN=rssp corpus null params"), body


async def test_cades_b_lt_from_signed_data_crls(online, renv):
    """EN 319 122-1 B-LT puts revocation data in SignedData.crls (rssp's own engine does): B-LT."""
    answer = await online.sign(renv.docs["cades-B-LT"])
    assert (answer["signatures"][0]["level"], answer["indication"]) == ("B-LT", "TOTAL_PASSED"), answer


async def test_cades_archive_timestamp_verified_and_tampered_refused(online, renv):
    """An archive-time-stamp-v3 is verified (message imprint, token, TSA): a good one passes, one
    whose token was changed fails and is not a proof of existence."""
    good = await online.sign(renv.docs["cades-B-LTA"])
    bad = await online.sign(renv.docs["cades-B-LTA-tampered"])
    kinds = lambda a: [(t["type"], t["indication"]) for t in a["signatures"][0]["timestamps"]]  # noqa: E731
    assert (good["signatures"][0]["level"], kinds(good)) == \
        ("B-LTA", [("signature", "TOTAL_PASSED"), ("archive", "TOTAL_PASSED")]), good
    assert kinds(bad) == [("signature", "TOTAL_PASSED"), ("archive", "TOTAL_FAILED")], bad


# ==================================================================================== validCert

async def test_valid_cert_crl_in_request_revokes_a_sourceless_certificate(online, renv):
    """A certificate naming no OCSP responder or CRL passes when nothing is known; the caller's
    CRL revoking it decides: REVOKED_NO_POE, from the CRL."""
    cert = sourceless_certificate(renv.pki)
    body = {"certificates": [b64(cert.dump()), b64(renv.pki.cert("interm").dump())]}
    assert (await online.call("validates/validCert", body))["indication"] == "TOTAL_PASSED"
    answer = await online.call("validates/validCert", {**body, "crls": [b64(crl_revoking(renv.pki, cert))]})
    assert (answer["indication"], answer.get("subIndication"), answer["status"], answer["revocation"]["source"]) == \
        ("INDETERMINATE", "REVOKED_NO_POE", "revoked", "crl"), answer


# ==================================================================================== rssp's own B-LTA

async def test_signdoc_b_lta_of_a_development_instance_validates(http, tmp_path):
    """signDoc at Ades-B-LTA on a development instance, then validSign on the same instance.

    The local CA's certificates name no OCSP responder or CRL; the TSA's chain does (and the
    document carries its revocation data). pyHanko's long-term process also runs its past
    validation when the signature passes at the validation time, and its time-slide wants
    revocation data for every certificate: it said NO_POE. The document is what it can be; the
    signature passes with time, so it passes (TOTAL_PASSED, B-LTA, a note saying why).

    Without the start-up probe, the worker holds no token of the TSA when the call comes: the
    TSA's chain (the root B-LTA validates its path to) is learnt first. Read as it stood, it was
    empty in a worker's first moments, and the call answered 503 (a CI failure, 1 run in ~10)."""
    dep = make_deployment_minimal(tmp_path / "dev", None)
    configure(dep, timestamps={"probe_on_start": False})
    dep.start(workers=1)
    try:
        csc = CSC(http, dep)
        token = await csc.token("signer")
        pdf = simple_pdf()
        sad = await csc.sad(token, dep.creds["signer"], hashes=[hashlib.sha256(pdf).digest()])
        status, signed = await csc.call("signatures/signDoc", {
            "credentialID": dep.creds["signer"].id, "SAD": sad, "documents": [{
                "document": b64(pdf), "signature_format": "P", "conformance_level": "Ades-B-LTA",
                "signAlgo": "1.2.840.10045.4.3.2"}]}, token)
        assert status == 200, signed
        document = base64.b64decode(signed["DocumentWithSignature"][0])
        answer = await Client(csc, token).sign(document)
    finally:
        dep.stop()
    sig = answer["signatures"][0]
    assert (answer["indication"], sig["level"], [t["indication"] for t in sig["timestamps"]]) == \
        ("TOTAL_PASSED", "B-LTA", ["TOTAL_PASSED", "TOTAL_PASSED"]), answer

# ==================================================================================== last: stops the animator

async def test_fetch_failure_inside_long_term_validation_is_try_later(http, renv):
    """A document time-stamp after a signature, and every responder down (the TSA's too):
    pyHanko's long-term process meets the failed fetches while it checks the time-stamps; the
    answer is TRY_LATER (ask again), never a 400. A fresh instance, so nothing is cached."""
    renv.animator.stop()
    dep = validation_instance(renv.base / "lta", renv.pki, {"fetch_allow": renv.fetch_allow,
                                                              "revocation_timeout_seconds": 2})
    try:
        csc = CSC(http, dep)
        answer = await Client(csc, await csc.token("alice")).sign(renv.docs["pdf-lta-offline"])
    finally:
        dep.stop()
    assert summary(answer) == [("Signature1", "INDETERMINATE", "TRY_LATER")], answer
