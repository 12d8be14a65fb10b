"""The XAdES engine (rssp/documents/xades.py) without the server: every level x envelope, from the
data and from a digest, against the corpus PKI of tests/validation_corpus.py (certomancer's OCSP
responder and CRLs served by its animator on a loopback port, its TSA in-process).

Each output is checked independently (tests/xades_helpers.py): ``xmlsec1 --verify`` for the
XML-DSig core against the PKI root; xadesjs for the core again and the qualifying properties it
reads (SigningCertificateV2 digest and IssuerSerialV2, DataObjectFormat, the unsigned properties
of the level); B-T: the time-stamp's imprint recomputed here with lxml from the canonical
SignatureValue; B-LT: the embedded values alone validate the signer's path (no fetching); B-LTA:
the archive time-stamp verifies. (That rssp computes the archive time-stamp's input as EU DSS
does is shown by tests/test_xades_corpus.py: DSS's B-LTA files verify with the same code.)
The signer counts its signature values: exactly one per output, none when refused.
"""

from __future__ import annotations

import base64
import hashlib
from dataclasses import dataclass
from pathlib import Path

import pytest
from asn1crypto import cms, crl, ocsp, tsp, x509
from lxml import etree
from pyhanko.sign import signers
from pyhanko.sign.timestamps import HTTPTimeStamper, TimeStamper
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import CertificateValidator, ValidationContext
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from tsa_helpers import ServerThread, animator
from validation_corpus import TEXT, ValidationPki
from xades_helpers import (
    DS_NS,
    INVOICE,
    LAUGHS,
    XADES_NS,
    XXE,
    b64text,
    signature_of,
    tamper_text,
    xadesjs_verify,
    xmlsec_run,
    xmlsec_verify,
)

from rssp.devpki import free_port
from rssp.documents import xades
from rssp.documents.model import LEVELS, DocumentError, DocumentOptions, Level, SigningTools, UpstreamUnavailable
from rssp.documents.xades_archive import archive_input
from rssp.documents.xades_core import ecdsa_raw
from rssp.documents.xades_refs import IdIndex
from rssp.documents.xades_xml import EXC_C14N, XADES141

ENVELOPES = ("Enveloped", "Enveloping", "Detached")
UNSIGNED = {"B-B": [], "B-T": ["SignatureTimeStamp"],
            "B-LT": ["SignatureTimeStamp", "CertificateValues", "RevocationValues"],
            "B-LTA": ["SignatureTimeStamp", "CertificateValues", "RevocationValues", "xades141:ArchiveTimeStamp"]}


class CountingSigner(signers.SimpleSigner):
    """The corpus signer, counting the signature values it makes (the HSM signer's SAD allows one)."""

    def __init__(self, pki: ValidationPki, label: str) -> None:
        base = pki.signer(label)
        super().__init__(signing_cert=base.signing_cert, signing_key=base.signing_key,
                         cert_registry=base.cert_registry)
        self.calls = 0

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        self.calls += 1
        return await super().async_sign_raw(data, digest_algorithm, dry_run)


class FailsAfter(TimeStamper):
    """The corpus TSA for the first ``good`` tokens, then a TSA URL where nothing listens."""

    def __init__(self, pki: ValidationPki, good: int) -> None:
        super().__init__()
        self.tsa, self.dead, self.good = pki.timestamper(), HTTPTimeStamper(f"{pki.dead_url}/tsa", timeout=2), good

    async def async_request_tsa_response(self, req):
        self.good -= 1
        return await (self.tsa if self.good >= 0 else self.dead).async_request_tsa_response(req)


@dataclass
class Env:
    pki: ValidationPki
    workdir: Path
    root_pem: Path

    def tools(self, signer: signers.Signer, timestamper: TimeStamper | None = None) -> SigningTools:
        return SigningTools(signer=signer, timestamper=timestamper or self.pki.timestamper(),
                            validation_context=self.pki.validation_context)


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    base = tmp_path_factory.mktemp("xades")
    thread, port = ServerThread(), free_port()
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
    server = animator(thread, pki, port)
    try:
        yield Env(pki, base, pki.write_root(base / "root.pem"))
    finally:
        server.close()
        thread.close()


@pytest.fixture(scope="module", autouse=True)
async def fetchers(env):
    env.pki.backend = AIOHttpFetcherBackend()
    yield
    await env.pki.backend.close()


def options(level: Level, envelope: str, algorithm: str = "sha256", **extra) -> DocumentOptions:
    return DocumentOptions(level=level, envelope=envelope, digest_algorithm=algorithm, **extra)


def unsigned(signature: etree._Element, local: str) -> list[etree._Element]:
    return [e for e in signature.iter(etree.Element) if etree.QName(e).localname == local
            and etree.QName(e.getparent()).localname == "UnsignedSignatureProperties"]


def token_of(stamp: etree._Element) -> cms.ContentInfo:
    [encapsulated] = [e for e in stamp if etree.QName(e).localname == "EncapsulatedTimeStamp"]
    return cms.ContentInfo.load(b64text(encapsulated))


def imprint(token: cms.ContentInfo) -> tuple[str, bytes]:
    info: tsp.TSTInfo = token["content"]["encap_content_info"]["content"].parsed
    message = info["message_imprint"]
    return message["hash_algorithm"]["algorithm"].native, message["hashed_message"].native


async def check_levels(env: Env, signed: bytes, level: str, content: bytes | None) -> None:
    """The unsigned properties of ``level``, each checked without rssp's own validation code."""
    signature = signature_of(signed)
    if level != "B-B":
        [stamp] = unsigned(signature, "SignatureTimeStamp")
        algorithm, value = imprint(token_of(stamp))
        covered = etree.tostring(signature.find(f"{{{DS_NS}}}SignatureValue"), method="c14n", exclusive=True)
        assert hashlib.new(algorithm, covered).digest() == value
    if level in ("B-LT", "B-LTA"):
        certs = [x509.Certificate.load(b64text(e))
                 for e in signature.iter(f"{{{XADES_NS}}}EncapsulatedX509Certificate")]
        crls = [crl.CertificateList.load(b64text(e)) for e in signature.iter(f"{{{XADES_NS}}}EncapsulatedCRLValue")]
        ocsps = [ocsp.OCSPResponse.load(b64text(e)) for e in signature.iter(f"{{{XADES_NS}}}EncapsulatedOCSPValue")]
        assert crls and ocsps
        offline = ValidationContext(trust_roots=[env.pki.cert("root")], other_certs=certs, crls=crls, ocsps=ocsps,
                                    allow_fetching=False, revocation_mode="hard-fail")
        for label in ("good", "tsa"):
            await CertificateValidator(env.pki.cert(label), intermediate_certs=certs,
                                       validation_context=offline).async_validate_usage(set())
    if level == "B-LTA":
        [stamp] = unsigned(signature, "ArchiveTimeStamp")
        assert etree.QName(stamp).namespace == XADES141
        tree = signature.getroottree()
        covered = archive_input(signature, tree, IdIndex(tree.getroot()), lambda uri: content, stamp, EXC_C14N)
        token = token_of(stamp)
        algorithm, value = imprint(token)
        assert hashlib.new(algorithm, covered).digest() == value
        status = await validate_tst_signed_data(token["content"], env.pki.validation_context(),
                                                lambda _algo: value)
        assert status["intact"] and status["valid"]


@pytest.mark.parametrize("envelope", ENVELOPES)
@pytest.mark.parametrize("level", LEVELS)
async def test_sign_xml(env, level, envelope):
    signer = CountingSigner(env.pki, "good")
    content = TEXT if envelope == "Detached" else INVOICE
    out = await xades.sign_xml(content, options(level, envelope), env.tools(signer))
    assert signer.calls == 1
    signed = out.document if envelope != "Detached" else out.signature
    assert (out.document is None) is (envelope == "Detached") and signed
    detached = ("document", TEXT) if envelope == "Detached" else None
    xmlsec_verify(env.workdir, signed, env.root_pem, detached)
    seen = xadesjs_verify(env.workdir, signed, TEXT if envelope == "Detached" else None)
    cert = env.pki.cert("good")
    assert seen["valid"] is True
    assert seen["certDigest"] == {"algorithm": "http://www.w3.org/2001/04/xmlenc#sha256",
                                  "value": base64.b64encode(hashlib.sha256(cert.dump()).digest()).decode()}
    serial = tsp.IssuerSerial.load(base64.b64decode(seen["issuerSerialV2"]))
    assert serial["serial_number"].native == cert.serial_number
    assert serial["issuer"][0].chosen == cert.issuer
    [(reference, mime)] = seen["dataObjectFormats"]
    first = signature_of(signed).find(f"{{{DS_NS}}}SignedInfo/{{{DS_NS}}}Reference")
    assert reference == f"#{first.get('Id')}"
    assert mime == ("application/octet-stream" if envelope == "Detached" else "text/xml")
    assert seen["unsigned"] == UNSIGNED[level]
    await check_levels(env, signed, level, TEXT if envelope == "Detached" else None)
    info = out.validation_info
    assert bool(info.ocsp and info.crl and info.certificates) is (level in ("B-LT", "B-LTA"))


async def test_enveloped_keeps_the_document(env):
    """The document is what it was, plus the signature as the last child of its root."""
    out = await xades.sign_xml(INVOICE, options("B-B", "Enveloped"), env.tools(CountingSigner(env.pki, "good")))
    root = etree.fromstring(out.document)
    assert root[-1].tag == f"{{{DS_NS}}}Signature"
    root.remove(root[-1])
    assert etree.tostring(root, method="c14n") == etree.tostring(etree.fromstring(INVOICE), method="c14n")
    assert out.document.startswith(b'<?xml version="1.0" encoding="UTF-8"?>')


async def test_tampering_is_seen_by_the_independent_verifiers(env):
    """The checks above are meaningful: xmlsec1 and xadesjs refuse a changed price, and xmlsec1 a
    changed SignedProperties."""
    out = await xades.sign_xml(INVOICE, options("B-B", "Enveloped"), env.tools(CountingSigner(env.pki, "good")))
    changed = tamper_text(out.document, b">1000<", b">9000<")
    assert xmlsec_run(env.workdir, changed, env.root_pem).returncode != 0
    assert xadesjs_verify(env.workdir, changed)["valid"] is False
    props = tamper_text(out.document, b"<xades:SigningTime>20", b"<xades:SigningTime>19")
    assert xmlsec_run(env.workdir, props, env.root_pem).returncode != 0


async def test_enveloping_binary_content(env):
    """Content that is not XML goes into the ds:Object as Base64, with the base64 transform."""
    blob = bytes(range(256)) * 4
    out = await xades.sign_xml(blob, options("B-T", "Enveloping"), env.tools(CountingSigner(env.pki, "good")))
    signature = signature_of(out.document)
    [obj] = [o for o in signature.iterfind(f"{{{DS_NS}}}Object") if o.get("Encoding")]
    assert base64.b64decode(obj.text) == blob
    xmlsec_verify(env.workdir, out.document, env.root_pem)


@pytest.mark.parametrize("level", ["B-B", "B-T", "B-LT"])
async def test_sign_digest(env, level):
    """documentDigests: a Detached signature made without the content, which verifies with it."""
    signer = CountingSigner(env.pki, "good")
    props = (("document-name", "invoice.xml"), ("mime-type", "application/xml"))
    out = await xades.sign_xml_digest(hashlib.sha256(INVOICE).digest(), options(level, "Detached", signed_props=props),
                                      env.tools(signer))
    assert signer.calls == 1 and out.document is None
    xmlsec_verify(env.workdir, out.signature, env.root_pem, ("invoice.xml", INVOICE))
    assert xadesjs_verify(env.workdir, out.signature, INVOICE)["dataObjectFormats"][0][1] == "application/xml"
    await check_levels(env, out.signature, level, None)


async def test_sign_digest_refuses_lta_and_wrong_lengths(env):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(DocumentError, match="AdES-B-LTA needs the whole document for XAdES"):
        await xades.sign_xml_digest(bytes(32), options("B-LTA", "Detached"), env.tools(signer))
    with pytest.raises(DocumentError, match="length"):
        await xades.sign_xml_digest(bytes(20), options("B-B", "Detached"), env.tools(signer))
    with pytest.raises(DocumentError, match="envelope"):
        await xades.sign_xml_digest(bytes(32), options("B-B", "Enveloped"), env.tools(signer))
    assert signer.calls == 0


async def test_signed_props(env):
    props = (("commitment-type-indication", "proof-of-approval"), ("Signer-Location", "Tokyo"),
             ("signer-role", "Accountant"))
    out = await xades.sign_xml(INVOICE, options("B-B", "Enveloped", signed_props=props),
                               env.tools(CountingSigner(env.pki, "good")))
    text = out.document.decode()
    assert "urn:oid:1.2.840.113549.1.9.16.6.5" in text and "<xades:City>Tokyo</xades:City>" in text
    assert "<xades:ClaimedRole>Accountant</xades:ClaimedRole>" in text
    xmlsec_verify(env.workdir, out.document, env.root_pem)


@pytest.mark.parametrize(("data", "props", "text"), [
    (XXE % b"file:///etc/passwd", (), "DTD"),
    (XXE % b"http://127.0.0.1:9/x", (), "DTD"),
    (LAUGHS, (), "DTD"),
    (b"not xml at all", (), "not well-formed XML"),
    (INVOICE, (("unknown", "x"),), "unsupported signed_props"),
    (INVOICE, (("document-name", "../etc/passwd"),), "document-name"),
])
async def test_refused_before_signing(env, data, props, text):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(DocumentError, match=text):
        await xades.sign_xml(data, options("B-B", "Enveloped", signed_props=props), env.tools(signer))
    assert signer.calls == 0


async def test_already_enveloped_document_is_refused(env):
    """A second enveloped signature would break the first (its URI="" would cover ours)."""
    first = await xades.sign_xml(INVOICE, options("B-B", "Enveloped"), env.tools(CountingSigner(env.pki, "good")))
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(DocumentError, match="already has a signature over the whole document"):
        await xades.sign_xml(first.document, options("B-B", "Enveloped"), env.tools(signer))
    detached = await xades.sign_xml(first.document, options("B-B", "Detached"), env.tools(signer))
    xmlsec_verify(env.workdir, detached.signature, env.root_pem, ("document", first.document))
    assert signer.calls == 1


async def test_responder_down_costs_no_signature(env):
    """B-LT for a signer whose OCSP responder and CRL do not answer: 503 before the HSM is asked."""
    signer = CountingSigner(env.pki, "offline")
    with pytest.raises(UpstreamUnavailable):
        await xades.sign_xml(INVOICE, options("B-LT", "Enveloped"), env.tools(signer))
    assert signer.calls == 0


async def test_tsa_failing_after_the_signature_yields_nothing(env):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(UpstreamUnavailable):
        await xades.sign_xml(INVOICE, options("B-LTA", "Enveloped"), env.tools(signer, FailsAfter(env.pki, 1)))
    assert signer.calls == 1


async def test_no_tsa_at_b_t_is_upstream(env):
    signer = CountingSigner(env.pki, "good")
    with pytest.raises(UpstreamUnavailable):
        await xades.sign_xml(INVOICE, options("B-T", "Enveloped"), SigningTools(signer))
    assert signer.calls == 0


def test_ecdsa_values_are_raw_r_s():
    """XML-DSig wants r || s, each as long as the curve's order (a CMS-style DER value is converted)."""
    from asn1crypto.algos import DSASignature

    der = DSASignature({"r": 5, "s": 2 ** 255 + 1}).dump()
    raw = ecdsa_raw(der, 256)
    assert raw == (5).to_bytes(32, "big") + (2 ** 255 + 1).to_bytes(32, "big")
    assert ecdsa_raw(raw, 256) == raw
