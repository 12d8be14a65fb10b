"""validates/validSign on XAdES (issue #15), over HTTP against a production instance.

The instance trusts the root of the corpus PKI (tests/validation_corpus.py: certomancer, OCSP and
CRLs served by its animator on a loopback port, every request counted); the XAdES documents are
made by rssp's engine with the corpus signers (good, revoked before and after signing) at every
level, then altered the ways attackers alter them: content changed, signed properties changed, the
classic signature-wrapping move, a wrong detached digest, DTDs with external entities and entity
expansion, a reference to a URL. Each answer is the EN 319 102-1 indication EU DSS would give.
"""

from __future__ import annotations

import base64
import hashlib
import os
import time
import tomllib
from dataclasses import dataclass
from typing import Any

import pytest
import tomli_w
from client import CSC
from deployment import Deployment
from lxml import etree
from test_validates import counting_animator
from tsa_helpers import ServerThread
from validation_corpus import LATE_DELAY, TEXT, ValidationPki, b64
from xades_helpers import (
    DS_NS,
    INVOICE,
    LAUGHS,
    PARTIAL,
    XXE,
    Plan,
    build_signed,
    signature_of,
    tamper_text,
    wrap,
)

from rssp.devpki import free_port
from rssp.documents.model import LEVELS

SHA256_OID = "2.16.840.1.101.3.4.2.1"
SHA512_OID = "2.16.840.1.101.3.4.2.3"
PLAN: Plan = {  # name -> (signer, level, envelope, content); revoked-late first: signed before its revocation
    "revoked-late-B-T": ("revoked-late", "B-T", "Enveloped", INVOICE),
    "revoked-late-B-B": ("revoked-late", "B-B", "Enveloped", INVOICE),
    **{f"enveloped-{level}": ("good", level, "Enveloped", INVOICE) for level in LEVELS},
    "enveloping-B-LTA": ("good", "B-LTA", "Enveloping", INVOICE),
    "detached-B-LTA": ("good", "B-LTA", "Detached", TEXT),
    "detached-B-T": ("good", "B-T", "Detached", TEXT),
    "revoked-early-B-T": ("revoked-early", "B-T", "Enveloped", INVOICE),
    "partial": ("good", "B-B", PARTIAL, INVOICE),
}


@dataclass
class Env:
    dep: Deployment
    docs: dict[str, bytes]
    hits: dict[str, int]
    prefix: str


@pytest.fixture(scope="module")
def xenv(tmp_path_factory):
    base = tmp_path_factory.mktemp("xades-validation")
    thread, port = ServerThread(), free_port()
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
    hits: dict[str, int] = {}
    server = counting_animator(thread, pki, port, hits)
    try:
        docs = build_signed(pki, PLAN)
        if time.time() > pki.created + LATE_DELAY - 1.5:
            raise RuntimeError("the machine is too slow: 'revoked-late' was revoked before its documents were signed")
        env_vars = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
        dep = Deployment(base / "instance", None, env_vars)
        dep.rssp("init", str(dep.directory), "--production")
        dep.add_user("alice", "alice-password")
        pki.write_root(dep.directory / "corpus-root.pem")
        config_path = dep.directory / "rssp.toml"
        raw = tomllib.loads(config_path.read_text())
        raw["validation"] = {**raw.get("validation", {}), "trust_anchors": ["corpus-root.pem"],
                             "fetch_allow": [f"http://127.0.0.1:{port}/"]}
        config_path.write_text(tomli_w.dumps(raw))
        dep.seal_config()
        dep.start(workers=1)
        remaining = pki.created + LATE_DELAY + 1.5 - time.time()
        if remaining > 0:
            time.sleep(remaining)
        try:
            yield Env(dep, docs, hits, f"http://127.0.0.1:{port}")
        finally:
            dep.stop()
    finally:
        server.close()
        thread.close()


class Val:
    def __init__(self, csc: CSC, env: Env, token: str) -> None:
        self.csc, self.env, self.token = csc, env, token

    async def sign(self, status: int = 200, **body: Any) -> dict[str, Any]:
        got, data = await self.csc.call("validates/validSign", body, self.token)
        assert got == status, data
        return data

    async def doc(self, data: bytes, **extra: Any) -> dict[str, Any]:
        return await self.sign(document=b64(data), **extra)


@pytest.fixture
async def val(http, xenv) -> Val:
    csc = CSC(http, xenv.dep)
    return Val(csc, xenv, await csc.token("alice"))


def single(body: dict[str, Any]) -> dict[str, Any]:
    [sig] = body["signatures"]
    assert body["indication"] == sig["indication"]
    return sig


STAMPS = {"B-B": [], "B-T": ["signature"], "B-LT": ["signature"], "B-LTA": ["signature", "archive"]}


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT", "B-LTA"])
async def test_enveloped_levels(val, level):
    sig = single(await val.doc(val.env.docs[f"enveloped-{level}"]))
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL_PASSED", level, "XAdES-enveloped"), sig
    assert [t["type"] for t in sig["timestamps"]] == STAMPS[level]
    assert all(t["indication"] == "TOTAL_PASSED" for t in sig["timestamps"])
    assert sig["signedObjects"] == [{"uri": "", "element": "/"}]
    assert sig["signer"]["subjectDN"].startswith("CN=rssp corpus good") and sig["signingTime"]


async def test_enveloping_and_detached_lta(val):
    sig = single(await val.doc(val.env.docs["enveloping-B-LTA"]))
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL_PASSED", "B-LTA", "XAdES-enveloping")
    assert sig["signedObjects"][0]["element"].startswith("/ds:Signature/ds:Object")
    body = await val.sign(signature=b64(val.env.docs["detached-B-LTA"]), document=b64(TEXT))
    sig = single(body)
    assert (sig["indication"], sig["level"], sig["format"]) == ("TOTAL_PASSED", "B-LTA", "XAdES-detached")
    assert sig["signedObjects"] == [{"uri": "document", "element": "external"}]


async def test_detached_digests(val):
    """documentDigests: right digest passes; a wrong one is HASH_FAILURE; without the content the
    archive time-stamp cannot be recomputed (INDETERMINATE), the signature still validates."""
    signature = b64(val.env.docs["detached-B-T"])
    good = {"hashes": [b64(hashlib.sha256(TEXT).digest())], "hashAlgorithmOID": SHA256_OID}
    assert single(await val.sign(signature=signature, documentDigests=good))["indication"] == "TOTAL_PASSED"
    wrong = {"hashes": [b64(hashlib.sha256(b"another document").digest())], "hashAlgorithmOID": SHA256_OID}
    sig = single(await val.sign(signature=signature, documentDigests=wrong))
    assert (sig["indication"], sig["subIndication"]) == ("TOTAL_FAILED", "HASH_FAILURE")
    other_algorithm = {"hashes": [b64(hashlib.sha512(TEXT).digest())], "hashAlgorithmOID": SHA512_OID}
    body = await val.sign(400, signature=signature, documentDigests=other_algorithm)
    assert body["error_description"] == "documentDigests do not use the signature's digest algorithm"
    lta = single(await val.sign(signature=b64(val.env.docs["detached-B-LTA"]), documentDigests=good))
    assert lta["indication"] == "TOTAL_PASSED"
    assert [t["indication"] for t in lta["timestamps"]] == ["TOTAL_PASSED", "INDETERMINATE"]
    sig = single(await val.sign(signature=signature, document=b64(TEXT + b"!")))
    assert (sig["indication"], sig["subIndication"]) == ("TOTAL_FAILED", "HASH_FAILURE")


async def test_tampered_content_and_signed_properties(val):
    for level in ("B-B", "B-LTA"):
        changed = tamper_text(val.env.docs[f"enveloped-{level}"], b">1000<", b">9000<")
        sig = single(await val.doc(changed))
        assert (sig["indication"], sig["subIndication"]) == ("TOTAL_FAILED", "HASH_FAILURE"), sig
    props = tamper_text(val.env.docs["enveloped-B-T"], b"<xades:SigningTime>20", b"<xades:SigningTime>19")
    sig = single(await val.doc(props))
    assert (sig["indication"], sig["subIndication"]) == ("TOTAL_FAILED", "HASH_FAILURE"), sig
    value = signature_of(val.env.docs["enveloped-B-B"]).findtext(f"{{{DS_NS}}}SignatureValue")
    flipped = value[:10] + ("A" if value[10] != "A" else "B") + value[11:]
    sig = single(await val.doc(tamper_text(val.env.docs["enveloped-B-B"], value.encode(), flipped.encode())))
    assert (sig["indication"], sig["subIndication"]) == ("TOTAL_FAILED", "SIG_CRYPTO_FAILURE"), sig


async def test_signature_wrapping(val):
    """A signature over ``#item-1`` reports where that element is; moving it into the signature and
    putting a changed element with the same Id in its place is refused (two elements, one Id)."""
    partial = val.env.docs["partial"]
    sig = single(await val.doc(partial))
    root = etree.fromstring(partial)
    item = next(e for e in root.iter() if isinstance(e.tag, str) and e.get("Id") == "item-1")
    assert sig["indication"] == "TOTAL_PASSED"
    assert sig["signedObjects"] == [{"uri": "#item-1", "element": root.getroottree().getpath(item)}]
    sig = single(await val.doc(wrap(partial)))
    assert (sig["indication"], sig["subIndication"]) == ("TOTAL_FAILED", "FORMAT_FAILURE"), sig


async def test_revoked_signer_before_and_after_the_timestamp(val):
    sig = single(await val.doc(val.env.docs["revoked-early-B-T"]))
    assert (sig["indication"], sig["subIndication"], sig["certStatus"]) == \
        ("INDETERMINATE", "REVOKED_NO_POE", "revoked")
    sig = single(await val.doc(val.env.docs["revoked-late-B-T"]))  # revoked after its signature time-stamp
    assert (sig["indication"], sig["level"]) == ("TOTAL_PASSED", "B-T"), sig
    sig = single(await val.doc(val.env.docs["revoked-late-B-B"]))  # no time-stamp: no proof it came first
    assert (sig["indication"], sig["subIndication"]) == ("INDETERMINATE", "REVOKED_NO_POE"), sig


@pytest.mark.parametrize("name", ["xxe-file", "xxe-http", "billion-laughs", "xxe-utf16", "too-deep", "not-xml"])
async def test_xml_attacks_are_refused(val, name):
    """400 with a fixed text, before anything is parsed with a DTD; nothing fetched."""
    documents = {
        "xxe-file": XXE % b"file:///etc/passwd",
        "xxe-http": XXE % f"{val.env.prefix}/val/certs/root/ca.crt".encode(),
        "billion-laughs": LAUGHS,
        "xxe-utf16": (XXE % f"{val.env.prefix}/val/x".encode()).decode().replace(
            'version="1.0"', 'version="1.0" encoding="UTF-16"').encode("utf-16"),
        "too-deep": b"<a>" * 10_000 + b"</a>" * 10_000,
        "not-xml": b"<a><b></a>",
    }
    before = dict(val.env.hits)
    body = await val.sign(400, document=b64(documents[name]))
    assert body["error"] == "invalid_request"
    expected = "The document is not well-formed XML" if name in ("too-deep", "not-xml") else \
        "XML documents with a DTD (DOCTYPE) are not accepted"
    assert body["error_description"] == expected
    body = await val.sign(400, signature=b64(documents[name]), document=b64(TEXT))
    assert body["error_description"] == expected
    assert val.env.hits == before


async def test_billion_laughs_costs_nothing(val):
    """A much larger expansion bomb is refused as fast and as cheaply as a small one: its bytes
    are scanned, never expanded (the answer comes, the server keeps answering)."""
    bomb = LAUGHS.replace(b"&lol9;", b"&lol9;" * 2000)
    started = time.monotonic()
    body = await val.sign(400, document=b64(bomb))
    assert body["error_description"] == "XML documents with a DTD (DOCTYPE) are not accepted"
    assert time.monotonic() - started < 30  # a safety bound, not a measurement
    assert single(await val.doc(val.env.docs["enveloped-B-B"]))["indication"] == "TOTAL_PASSED"


async def test_reference_to_a_url_is_never_fetched(val):
    """A detached signature whose reference names a URL the service could reach: nothing is
    fetched; without the content the signed data is not found."""
    url = f"{val.env.prefix}/val/certs/root/ca.crt"
    signed = tamper_text(val.env.docs["detached-B-T"], b'URI="document"', f'URI="{url}"'.encode())
    before = dict(val.env.hits)
    sig = single(await val.doc(signed))
    assert (sig["indication"], sig["subIndication"]) == ("INDETERMINATE", "SIGNED_DATA_NOT_FOUND"), sig
    assert val.env.hits == before


async def test_etsi_report_and_validation_info(val):
    body = await val.doc(val.env.docs["enveloped-B-LTA"], returnReport="etsi", returnValidationInfo=True)
    report = etree.fromstring(base64.b64decode(body["report"]))
    ns = {"vr": "http://uri.etsi.org/19102/v1.2.1#"}
    [entry] = report.findall("vr:SignatureValidationReport", ns)
    assert entry.findtext("vr:SignatureValidationStatus/vr:MainIndication", namespaces=ns) == \
        "urn:etsi:019102:mainindication:total-passed"
    identifier = entry.find("vr:SignatureIdentifier", ns)
    assert identifier.get("id") == signature_of(val.env.docs["enveloped-B-LTA"]).get("Id")
    assert entry.findtext("vr:SignatureValidationProcess/vr:SignatureValidationProcessID", namespaces=ns) == \
        "urn:etsi:019102:validationprocess:LTA"
    assert body["validationInfo"]["certificates"]
    failed = await val.doc(tamper_text(val.env.docs["enveloped-B-B"], b">1000<", b">9000<"), returnReport="etsi")
    report = etree.fromstring(base64.b64decode(failed["report"]))
    assert report.findtext("vr:SignatureValidationReport/vr:SignatureValidationStatus/vr:SubIndication",
                           namespaces=ns) == "urn:etsi:019102:subindication:HASH_FAILURE"


async def test_plain_xml_without_signature_is_refused(val):
    body = await val.sign(400, document=b64(INVOICE))
    assert body["error_description"] == "the XML document holds no signature"
