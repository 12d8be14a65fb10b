"""signatures/signDoc refusals over HTTP (``dep``, both backends): malformed documents and fields.

Every refusal is a 4xx CSC error with a fixed text (the CSC texts of csc_v2_notes.md §4.3 where
the specification has one), and spends nothing: the SAD of each test (one signature) signs a good
document afterwards.
"""

from __future__ import annotations

import hashlib
import secrets
from io import BytesIO
from typing import Any

import pytest
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.pdf_utils.writer import copy_into_new_writer
from pyhanko.sign import fields
from signdoc_helpers import (
    OtherSigner,
    Signer,
    audited_digests,
    digest_entry,
    doc_entry,
    request_digests,
    sha256,
    unb64,
)
from validation_corpus import TEXT, simple_pdf

from client import SHA384

ECDSA_SHA384 = "1.2.840.10045.4.3.3"


@pytest.fixture
async def app(csc) -> Signer:
    return Signer(csc, await csc.token("alice"))


def encrypted_pdf() -> bytes:
    writer = copy_into_new_writer(PdfFileReader(BytesIO(simple_pdf())))
    writer.encrypt("owner-password", "user-password")
    out = BytesIO()
    writer.write(out)
    return out.getvalue()


async def refused(app: Signer, dep: Any, body: dict[str, Any], text: str, status: int = 400) -> None:
    """signDoc answers the CSC error, and nothing of the request reached the SAD (the audit says)."""
    got = await app.csc.call("signatures/signDoc", body, app.token)
    assert got == (status, {"error": "invalid_request", "error_description": text})
    assert not request_digests(body) & await audited_digests(dep)


async def still_signs(app: Signer, cred: Any, sad: str) -> None:
    """The SAD (one signature) was not spent by the refusal: it signs a good document now."""
    status, body = await app.sign_doc(cred, sad, documents=[doc_entry(TEXT + secrets.token_bytes(4), "C", cred=cred)])
    assert status == 200, body


# ---------------------------------------------------------------------- malformed documents

MALFORMED = {
    "not-a-pdf": (lambda: b"Dear Sir or Madam, please sign this letter.", "The document is not a PDF"),
    "header-only": (lambda: b"%PDF-1.7\n", "The PDF is truncated (no end-of-file marker)"),
    "truncated": (lambda: simple_pdf()[: len(simple_pdf()) // 2], "The PDF is truncated (no end-of-file marker)"),
    "encrypted": (encrypted_pdf, "Encrypted PDFs cannot be signed"),
}


@pytest.mark.parametrize("envelope", ["Certification", "Revision"])
@pytest.mark.parametrize("name", list(MALFORMED))
async def test_malformed_pdf(app, dep, name, envelope):
    make, text = MALFORMED[name]
    cred = dep.creds["p256"]
    sad = await app.sad(cred)
    body = {"credentialID": cred.id, "SAD": sad, "documents": [doc_entry(make(), "P", "B-LTA", envelope, cred=cred)]}
    await refused(app, dep, body, text)
    await still_signs(app, cred, sad)


async def test_certification_of_a_signed_pdf(app, dep, tmp_path):
    cred = dep.creds["p256"]
    signed = await OtherSigner(tmp_path).sign_pdf(simple_pdf())
    sad = await app.sad(cred)
    body = {"credentialID": cred.id, "SAD": sad,
            "documents": [doc_entry(signed, "P", "B-B", "Certification", cred=cred)]}
    await refused(app, dep, body, "A certification signature must be the first signature of a document; this one is "
                                  "already signed (use Revision)")
    await still_signs(app, cred, sad)


async def test_docmdp_no_changes_takes_no_signature(app, dep, tmp_path):
    """A certification that allows no changes (P=1) forbids a further signature, even a Revision."""
    cred = dep.creds["p256"]
    locked = await OtherSigner(tmp_path).sign_pdf(simple_pdf(TEXT + secrets.token_hex(4).encode()),
                                                  certify=fields.MDPPerm.NO_CHANGES)
    sad = await app.sad(cred)
    body = {"credentialID": cred.id, "SAD": sad, "documents": [doc_entry(locked, "P", "B-B", "Revision", cred=cred)]}
    await refused(app, dep, body, "The document's DocMDP permissions (P=1) forbid any further signature")
    await still_signs(app, cred, sad)


@pytest.mark.parametrize("kind", ["not-cms", "detached-cms", "content-changed"])
async def test_parallel_needs_an_attached_cms(app, dep, tmp_path, kind):
    cred = dep.creds["p256"]
    if kind == "not-cms":
        data, text = simple_pdf(), "A Parallel signature needs a CMS SignedData document"
    elif kind == "content-changed":  # the encapsulated content is no longer what its signer signed
        content = TEXT + secrets.token_hex(4).encode()
        signed = OtherSigner(tmp_path).openssl_cms(content)
        data, text = signed.replace(content, content.upper()), "the document does not match the existing signatures"
    else:
        answer = await app.sign_ok(cred, documents=[doc_entry(TEXT, "C", "B-B", "Detached", cred=cred)])
        data, text = unb64(answer["SignatureObject"][0]), ("A Parallel signature needs the signed content inside the "
                                                            "CMS (attached)")
    sad = await app.sad(cred)
    body = {"credentialID": cred.id, "SAD": sad, "documents": [doc_entry(data, "C", "B-T", "Parallel", cred=cred)]}
    await refused(app, dep, body, text)
    await still_signs(app, cred, sad)


async def test_garbage_base64(app, dep):
    cred = dep.creds["p256"]
    sad = await app.sad(cred)
    for documents, digests, text in [
        ([{**doc_entry(TEXT, "C", cred=cred), "document": "!!! not base64 !!!"}], None,
         "Invalid Base64 documents string parameter"),
        ([{**doc_entry(TEXT, "C", cred=cred), "document": ""}], None, "Invalid Base64 documents string parameter"),
        (None, [{**digest_entry([], "C", envelope="Detached", cred=cred), "hashes": ["%%%"]}],
         "Invalid Base64 hashes string parameter"),
    ]:
        body = {"credentialID": cred.id, "SAD": sad, "documents": documents, "documentDigests": digests}
        await refused(app, dep, {k: v for k, v in body.items() if v is not None}, text)
    await still_signs(app, cred, sad)


# ---------------------------------------------------------------------- fields

def _doc(**change: Any) -> dict[str, Any]:
    entry = doc_entry(TEXT + secrets.token_bytes(6), "C", "B-B", "Attached")
    entry.update(change)
    return {k: v for k, v in entry.items() if v is not None}


def _pdf(**change: Any) -> dict[str, Any]:
    entry = doc_entry(simple_pdf(TEXT + secrets.token_hex(6).encode()), "P", "B-B")
    entry.update(change)
    return {k: v for k, v in entry.items() if v is not None}


def _dig(fmt: str = "C", envelope: str | None = "Detached", **change: Any) -> dict[str, Any]:
    entry = digest_entry([sha256(TEXT + secrets.token_bytes(6))], fmt, "B-B", envelope)
    entry.update(change)
    return {k: v for k, v in entry.items() if v is not None}


SIGNED_PROPS = "Invalid parameter signed_props"
FIELD_CASES: dict[str, tuple[dict[str, Any], str]] = {
    "both": ({"documents": [_doc()], "documentDigests": [_dig()]},
             "Both documentDigests and documents parameters passed"),
    "neither": ({}, "Empty documentDigests and documents objects"),
    "documents-empty": ({"documents": []}, "Empty documentDigests and documents objects"),
    "documents-not-array": ({"documents": "x"}, "Invalid array parameter documents"),
    "digests-not-array": ({"documentDigests": _dig()}, "Invalid object parameter documentDigests"),
    "format-Z": ({"documents": [_doc(signature_format="Z")]}, "Invalid parameter signature_format"),
    "format-J": ({"documents": [_doc(signature_format="J")]}, "Invalid parameter signature_format"),
    "format-missing": ({"documents": [_doc(signature_format=None)]},
                       "Missing (or invalid type) string parameter signature_format"),
    "format-number": ({"documents": [_doc(signature_format=1)]},
                      "Missing (or invalid type) string parameter signature_format"),
    "level-unknown": ({"documents": [_doc(conformance_level="AdES-B-LTV")]}, "Invalid parameter conformance_level"),
    "level-xades-name": ({"documents": [_doc(conformance_level="XAdES-B-B")]}, "Invalid parameter conformance_level"),
    "envelope-pades-attached": ({"documents": [_pdf(signed_envelope_property="Attached")]},
                                "Invalid parameter signed_envelope_property"),
    "envelope-cades-enveloped": ({"documents": [_doc(signed_envelope_property="Enveloped")]},
                                 "Invalid parameter signed_envelope_property"),
    "envelope-digest-attached": ({"documentDigests": [_dig(envelope="Attached")]},
                                 "Invalid parameter signed_envelope_property"),
    "envelope-digest-parallel": ({"documentDigests": [_dig(envelope="Parallel")]},
                                 "Invalid parameter signed_envelope_property"),
    "props-not-array": ({"documents": [_doc(signed_props="reason")]}, SIGNED_PROPS),
    "props-no-name": ({"documents": [_doc(signed_props=[{"attribute_value": "x"}])]}, SIGNED_PROPS),
    "props-pades-unknown": ({"documents": [_pdf(signed_props=[{"attribute_name": "colour",
                                                                "attribute_value": "red"}])]},
                            f"{SIGNED_PROPS}: unsupported attribute colour"),
    "props-pades-twice": ({"documents": [_pdf(signed_props=[{"attribute_name": "reason", "attribute_value": "a"},
                                                            {"attribute_name": "Reason", "attribute_value": "b"}])]},
                          f"{SIGNED_PROPS}: attribute Reason given twice"),
    "props-cades-unknown": ({"documents": [_doc(signed_props=[{"attribute_name": "colour",
                                                                "attribute_value": "red"}])]},
                            f"{SIGNED_PROPS}: unsupported signed_props attribute for CAdES"),
    "props-cades-commitment": ({"documents": [_doc(signed_props=[{"attribute_name": "commitment-type-indication",
                                                                  "attribute_value": "proof-of-nothing"}])]},
                               f"{SIGNED_PROPS}: unknown commitment-type-indication"),
    "props-pades-digest": ({"documentDigests": [_dig("P", None, signed_props=[{"attribute_name": "reason",
                                                                               "attribute_value": "a"}])]},
                           f"{SIGNED_PROPS}: with a PAdES document digest the client writes the signature "
                           "dictionary"),
    "mixed-hash-algorithms": ({"documents": [_doc(), _doc(signAlgo=ECDSA_SHA384)]},
                              "String parameter hashAlgorithmOID contradicts with signAlgo parameter"),
    "hash-contradicts-signalgo": ({"documents": [_doc(hashAlgorithmOID=SHA384)]}, "Invalid parameter hashAlgorithmOID"),
    "signalgo-unknown": ({"documents": [_doc(signAlgo="1.2.3.4")]}, "Invalid parameter signAlgo"),
    "signalgo-missing": ({"documents": [_doc(signAlgo=None)]}, "Missing (or invalid type) string parameter signAlgo"),
    "digest-length": ({"documentDigests": [_dig(hashes=["AAAA"])]}, "Invalid digest value length"),
    "digest-empty": ({"documentDigests": [_dig(hashes=[])]}, "Empty hash array"),
    "digest-missing": ({"documentDigests": [_dig(hashes=None)]}, "Missing (or invalid type) array parameter hashes"),
    "pades-lta-digest": ({"documentDigests": [_dig("P", None, conformance_level="Ades-B-LTA")]},
                         "AdES-B-LTA needs the whole document for PAdES"),
    "timestamp-id": ({"documents": [_doc(conformance_level="Ades-B-T")], "timestampID": "no-such-tsa"},
                     "Invalid parameter timestampID"),
}


@pytest.mark.parametrize("name", list(FIELD_CASES))
async def test_field_refusals(app, dep, name):
    fields, text = FIELD_CASES[name]
    cred = dep.creds["p256"]
    sad = await app.sad(cred)
    await refused(app, dep, {"credentialID": cred.id, "SAD": sad, **fields}, text)
    await still_signs(app, cred, sad)


async def test_credential_and_sad_refusals(app, dep):
    cred = dep.creds["p256"]
    sad = await app.sad(cred)
    base = {"SAD": sad, "documents": [_doc()]}
    for body, text in [
        (base, "Missing (or invalid type) string parameter credentialID"),
        ({**base, "credentialID": "nope"}, "Invalid parameter credentialID"),
        ({**base, "credentialID": dep.creds["bob"].id}, "Invalid parameter credentialID"),  # another user's
        ({**base, "signatureQualifier": "eu_eidas_qes"}, "Invalid parameter signatureQualifier"),
        ({"credentialID": cred.id, "documents": [_doc()]}, "Missing (or invalid type) string parameter SAD"),
        ({"credentialID": cred.id, "SAD": "x" * 40, "documents": [_doc()]}, "Invalid parameter SAD"),
    ]:
        status, answer = await app.csc.call("signatures/signDoc", body, app.token)
        assert (status, answer) == (400, {"error": "invalid_request", "error_description": text}), body.keys()
    await still_signs(app, cred, sad)


@pytest.mark.parametrize("level", ["Ades-B-T", "AdES-T", "ades-b-t", "ADES-T"])
async def test_conformance_level_spellings(app, dep, level):
    cred = dep.creds["p256"]
    answer = await app.sign_ok(cred, documents=[_doc(conformance_level=level)])
    assert len(answer["DocumentWithSignature"]) == 1


async def test_hash_algorithm_per_entry_or_at_top(app, dep):
    """SHA-384 for every entry: per entry (2.0.0.2) or at the top (2.1); a SHA-384 SAD covers both."""
    cred = dep.creds["p384"]
    data = TEXT + secrets.token_bytes(4)
    digest384 = hashlib.sha384(data).digest()
    entry = digest_entry([digest384], "C", "B-B", "Detached", cred=cred, hash_oid=SHA384)
    sad = await app.sad(cred, num=2)
    status, body = await app.sign_doc(cred, sad, digests=[entry])
    assert status == 200, body
    top = {k: v for k, v in entry.items() if k != "hashAlgorithmOID"}
    status, body = await app.sign_doc(cred, sad, digests=[top], hashAlgorithmOID=SHA384)
    assert status == 200, body
