"""What a signDoc SAD authorizes, over HTTP (``dep``, both backends).

Level 2 (``l2_p256``: PIN and TOTP): the SAD binds the digests the signer authorized; for
``documents`` that is the digest of each whole document as sent. A document whose digest is not
bound is refused (403 invalid_hash) and nothing is spent, so the same SAD still signs the
document it was made for; one SAD can bind several documents signed in one call. A
credential-scoped OAuth token works the same way for the digest it was granted.
"""

from __future__ import annotations

import secrets

import pytest
from asn1crypto import cms
from oauth_helpers import add_client, credential_token
from signdoc_checks import Roots, check_cades, check_pades
from signdoc_helpers import NOT_AUTHORIZED, Signer, audited_digests, digest_entry, doc_entry, sha256, unb64
from validation_corpus import TEXT, simple_pdf

REDIRECT = "https://signdoc.example/callback"


@pytest.fixture
async def app(csc) -> Signer:
    return Signer(csc, await csc.token("alice"))


@pytest.fixture
async def roots(app, dep, tmp_path) -> Roots:
    chain = await app.chain(dep.creds["p256"])
    return Roots([chain[-1]], [await app.tsa_root("dev-ec")], tmp_path)


def fresh_pdf() -> bytes:
    return simple_pdf(TEXT + secrets.token_hex(6).encode())


def fresh_text() -> bytes:
    return TEXT + secrets.token_bytes(6)


async def test_level2_signs_only_the_authorized_document(app, dep, roots):
    cred = dep.creds["l2_p256"]
    mine, also_mine, other = fresh_pdf(), fresh_pdf(), fresh_pdf()
    sad = await app.sad(cred, num=2, hashes=[sha256(mine), sha256(also_mine)])
    # another document, alone or beside an authorized one; its digest sent as a documentDigest
    for call in ({"documents": [doc_entry(other, "P", "B-T", cred=cred)]},
                 {"documents": [doc_entry(mine, "P", cred=cred), doc_entry(other, "P", cred=cred)]},
                 {"digests": [digest_entry([sha256(other)], "C", envelope="Detached", cred=cred)]}):
        status, body = await app.sign_doc(cred, sad, **call)
        assert (status, body) == (403, NOT_AUTHORIZED)
    assert sha256(other).hex() not in await audited_digests(dep)
    # the same SAD signs the documents it was made for, nothing of it spent by the refusals
    for document in (mine, also_mine):
        status, body = await app.sign_doc(cred, sad, documents=[doc_entry(document, "P", "B-T", cred=cred)])
        assert status == 200, body
        await check_pades(unb64(body["DocumentWithSignature"][0]), "B-T", roots, long_term=False)
    # and each only once
    status, body = await app.sign_doc(cred, sad, documents=[doc_entry(mine, "P", "B-T", cred=cred)])
    assert status == 400 and body["error"] == "invalid_request", body


async def test_level2_binds_the_digest_of_the_bytes_sent(app, dep):
    """The same document with one byte more is another document: the authorized digest is that of the bytes."""
    cred = dep.creds["l2_p256"]
    data = fresh_text()
    sad = await app.sad(cred, hashes=[sha256(data)])
    for changed in (data + b"\n", data[:-1]):
        status, body = await app.sign_doc(cred, sad, documents=[doc_entry(changed, "C", cred=cred)])
        assert (status, body) == (403, NOT_AUTHORIZED)
    status, body = await app.sign_doc(cred, sad, documents=[doc_entry(data, "C", cred=cred)])
    assert status == 200, body


async def test_level2_one_sad_for_several_documents(app, dep, roots):
    """Three documents, three formats, one call: the SAD binds their three digests (in any order)."""
    cred = dep.creds["l2_p256"]
    pdf, attached, detached = fresh_pdf(), fresh_text(), fresh_text()
    sad = await app.sad(cred, num=3, hashes=[sha256(detached), sha256(pdf), sha256(attached)])
    entries = [doc_entry(pdf, "P", "B-LT", cred=cred), doc_entry(attached, "C", "B-T", "Attached", cred=cred),
               doc_entry(detached, "C", "B-B", "Detached", cred=cred)]
    status, body = await app.sign_doc(cred, sad, documents=entries)
    assert status == 200, body
    signed_pdf, signed_cms = (unb64(d) for d in body["DocumentWithSignature"])
    [detached_cms] = [unb64(s) for s in body["SignatureObject"]]
    await check_pades(signed_pdf, "B-LT", roots, long_term=False)
    chain = await app.chain(cred)
    await check_cades(signed_cms, attached, "B-T", True, roots, chain[0])
    await check_cades(detached_cms, detached, "B-B", False, roots, chain[0])
    status, body = await app.sign_doc(cred, sad, documents=entries[:1])
    assert status == 400, body  # all three spent


async def test_several_digests_in_one_entry(app, dep, roots):
    """One documentDigests entry with two hashes gives two signatures, in order (level 1, SAD bound anyway)."""
    cred = dep.creds["p256"]
    first, second = fresh_text(), fresh_text()
    hashes = [sha256(first), sha256(second)]
    sad = await app.sad(cred, num=2, hashes=hashes)
    status, body = await app.sign_doc(cred, sad, digests=[digest_entry(hashes, "C", "B-T", "Detached", cred=cred)])
    assert status == 200, body
    chain = await app.chain(cred)
    for content, signature in zip([first, second], body["SignatureObject"], strict=True):
        ours = await check_cades(unb64(signature), content, "B-T", False, roots, chain[0])
        assert isinstance(ours, cms.SignerInfo)


async def test_credential_token_signs_the_granted_document(http, dep, app, roots):
    clients = dep.__dict__.setdefault("_signdoc_oauth", {})
    if "client" not in clients:
        clients["client"] = add_client(dep, "signDoc portal", REDIRECT)
    cred = dep.creds["p256"]
    granted, other = fresh_pdf(), fresh_pdf()
    token = (await credential_token(http, dep, clients["client"], cred, [sha256(granted)]))["access_token"]
    status, body = await app.sign_doc(cred, None, documents=[doc_entry(other, "P", cred=cred)], token=token)
    assert (status, body) == (403, NOT_AUTHORIZED)
    status, body = await app.sign_doc(cred, None, documents=[doc_entry(granted, "P", "B-T", cred=cred)], token=token)
    assert status == 200, body
    await check_pades(unb64(body["DocumentWithSignature"][0]), "B-T", roots, long_term=False)
    status, body = await app.sign_doc(cred, None, documents=[doc_entry(granted, "P", cred=cred)], token=token)
    assert status in (400, 401), body  # its one signature is spent
    # the token is for that credential only
    status, body = await app.sign_doc(dep.creds["rsa2048"], None, documents=[doc_entry(granted, "P")], token=token)
    assert (status, body["error_description"]) == (400, "Invalid parameter credentialID"), body
