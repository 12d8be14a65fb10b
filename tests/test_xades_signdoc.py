"""signatures/signDoc with ``signature_format: "X"`` (issue #15) against a running deployment.

The shared ``dep`` fixture (``rssp serve --workers 2`` on SQLite and PostgreSQL, its development
PKI's TSA, OCSP responder and CRLs): XAdES from the HSM, RSA and ECDSA, every envelope, up to
B-LTA, each verified by xmlsec1 (the XML-DSig core, against the credential's own root), by xadesjs,
and by rssp's validates/validSign at the level asked. The SAD authorizes the digest of each
document as sent; an XML document that is refused (a DTD) spends nothing.
"""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from asn1crypto import pem
from client import ECDSA_SHA256, SHA256, SHA256_RSA, b64
from xades_helpers import INVOICE, XXE, xadesjs_verify, xmlsec_verify

pytestmark = pytest.mark.usefixtures("dep")
DOCS = [  # envelope, level, content, what comes back
    ("Enveloped", "Ades-B-LTA", INVOICE, "DocumentWithSignature"),
    ("Enveloping", "Ades-B-T", INVOICE.replace(b"INV-2026-0042", b"INV-2026-0043"), "DocumentWithSignature"),
    ("Detached", "Ades-B-LT", b"%PDF-1.7 a contract, any bytes", "SignatureObject"),
]


async def root_pem(csc, token: str, cred, directory) -> Any:
    status, info = await csc.call("credentials/info", {"credentialID": cred.id, "certificates": "chain"}, token)
    assert status == 200, info
    path = directory / f"root-{cred.key}.pem"
    path.write_bytes(pem.armor("CERTIFICATE", base64.b64decode(info["cert"]["certificates"][-1])))
    return path


async def sign_doc(csc, token: str, cred, entries: list[dict[str, Any]], datas: list[bytes],
                   **extra: Any) -> tuple[int, Any]:
    sad = await csc.sad(token, cred, num=len(datas), hashes=[hashlib.sha256(d).digest() for d in datas])
    body = {"credentialID": cred.id, "SAD": sad, "documents": entries, **extra}
    return await csc.call("signatures/signDoc", body, token)


@pytest.mark.parametrize(("key", "algo"), [("rsa2048", SHA256_RSA), ("p256", ECDSA_SHA256)])
async def test_every_envelope_verifies_independently_and_in_rssp(csc, dep, tmp_path, key, algo):
    token, cred = await csc.token(), dep.creds[key]
    entries = [{"document": b64(data), "signature_format": "X", "signed_envelope_property": envelope,
                "conformance_level": level, "signAlgo": algo, "hashAlgorithmOID": SHA256}
               for envelope, level, data, _ in DOCS]
    status, body = await sign_doc(csc, token, cred, entries, [d for _, _, d, _ in DOCS], returnValidationInfo=True)
    assert status == 200, body
    root = await root_pem(csc, token, cred, tmp_path)
    documents, signatures = iter(body["DocumentWithSignature"]), iter(body["SignatureObject"])
    for envelope, level, data, kind in DOCS:
        signed = base64.b64decode(next(documents if kind == "DocumentWithSignature" else signatures))
        detached = ("document", data) if envelope == "Detached" else None
        xmlsec_verify(tmp_path, signed, root, detached)
        seen = xadesjs_verify(tmp_path, signed, data if envelope == "Detached" else None)
        assert seen["valid"] is True, seen
        request = {"signature": b64(signed), "document": b64(data)} if envelope == "Detached" else \
            {"document": b64(signed)}
        status, answer = await csc.call("validates/validSign", request, token)
        assert status == 200, answer
        [sig] = answer["signatures"]
        assert (sig["indication"], sig["level"], sig["format"]) == \
            ("TOTAL_PASSED", level.removeprefix("Ades-"), f"XAdES-{envelope.lower()}"), sig
    info = body["validationInfo"]
    assert info["ocsp"] or info["crl"]
    assert info["certificates"]


async def test_document_digest_gives_a_detached_signature(csc, dep, tmp_path):
    token, cred = await csc.token(), dep.creds["p256"]
    digest = hashlib.sha256(INVOICE).digest()
    sad = await csc.sad(token, cred, hashes=[digest])
    body = {"credentialID": cred.id, "SAD": sad, "documentDigests": [
        {"hashes": [b64(digest)], "hashAlgorithmOID": SHA256, "signature_format": "X", "signAlgo": ECDSA_SHA256,
         "conformance_level": "Ades-B-T", "signed_props": [{"attribute_name": "document-name",
                                                            "attribute_value": "invoice.xml"}]}]}
    status, answer = await csc.call("signatures/signDoc", body, token)
    assert status == 200 and set(answer) == {"SignatureObject"}, answer
    signed = base64.b64decode(answer["SignatureObject"][0])
    xmlsec_verify(tmp_path, signed, await root_pem(csc, token, cred, tmp_path), ("invoice.xml", INVOICE))
    status, result = await csc.call("validates/validSign", {"signature": b64(signed), "documentDigests": {
        "hashes": [b64(digest)], "hashAlgorithmOID": SHA256}}, token)
    assert status == 200 and result["indication"] == "TOTAL_PASSED", result


async def test_refused_xml_spends_nothing(csc, dep):
    """A document with a DTD is refused before the SAD is spent: the same SAD then signs."""
    token, cred = await csc.token(), dep.creds["p256"]
    hostile = XXE % b"file:///etc/passwd"
    sad = await csc.sad(token, cred, num=2, hashes=[hashlib.sha256(hostile).digest(), hashlib.sha256(INVOICE).digest()])
    entry = {"signature_format": "X", "signAlgo": ECDSA_SHA256, "hashAlgorithmOID": SHA256}
    status, body = await csc.call("signatures/signDoc", {"credentialID": cred.id, "SAD": sad, "documents": [
        {**entry, "document": b64(hostile)}]}, token)
    assert (status, body["error_description"]) == (400, "XML documents with a DTD (DOCTYPE) are not accepted")
    status, body = await csc.call("signatures/signDoc", {"credentialID": cred.id, "SAD": sad, "documents": [
        {**entry, "document": b64(INVOICE)}]}, token)
    assert status == 200 and set(body) == {"DocumentWithSignature"}, body


async def test_info_lists_xades(csc):
    status, body = await csc.call("info", {})
    assert status == 200
    formats = body["signature_formats"]
    index = formats["formats"].index("X")
    assert formats["envelope_properties"][index] == ["Enveloped", "Enveloping", "Detached"]
