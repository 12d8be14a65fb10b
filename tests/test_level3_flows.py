"""Level 3 end to end, SQLite and PostgreSQL: the OAuth consent page and a credential token,
signDoc (PAdES B-B), and a key enrolled by a CA's RA through manages/* (generateKey → authorize
→ linkEid → linkCert), each signing with the signer's PIN and TOTP."""

from __future__ import annotations

import base64
import time
from io import BytesIO
from urllib.parse import parse_qs, urlparse

import pytest
from argon2 import PasswordHasher
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat
from pyhanko.pdf_utils.reader import PdfFileReader
from pyhanko.sign.validation import async_validate_pdf_signature
from pyhanko_certvalidator import ValidationContext
from sqlalchemy import select, update

from client import ECDSA_SHA256, SHA256, b64, digest
from deployment import Cred
from level3_helpers import PIN3, Db, certificate, level3, sign_algo, verify
from manages_helpers import RA, local_ca_issue
from oauth_helpers import FormBrowser, add_client, auth_params, credential_params, exchange, pkce, query_of
from rssp.auth.secrets import digest as secret_digest
from rssp.store.schema import oauth_codes, sads
from validation_corpus import simple_pdf

EC = "1.2.840.10045.2.1"
P256 = "1.2.840.10045.3.1.7"
REDIRECT = "https://sa.example/level3"


@pytest.fixture
def portal(dep):
    cache = dep.__dict__.setdefault("_level3_clients", {})
    if not cache:
        cache["sa"] = add_client(dep, "Level-3 portal", REDIRECT)
    return cache["sa"]


async def test_consent_page_issues_a_credential_token_that_signs_what_was_consented(http, dep, csc, portal):
    cred = level3(dep, "l3_oauth")
    h1, h2, other = (digest(f"consented {i} {time.time_ns()}".encode()) for i in range(3))
    verifier, challenge = pkce()
    params = auth_params(portal, challenge, **credential_params(cred, [h1, h2]))
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(params)
        assert page.status == 200, page.text
        page = await browser.login("alice")
        assert page.status == 200, page.text
        page = await browser.consent(cred, pin="Wrong-pin-864")  # a wrong PIN: refused, counted
        assert page.status == 400, page.text
        async with Db(dep) as db:
            assert (await db.credential(cred.id)).failed_attempts == 1
        page = await browser.consent(cred)
        assert page.status == 303, page.text
    code = query_of(page.location or "")["code"]
    async with Db(dep) as db:
        row = await db.one(select(oauth_codes).where(oauth_codes.c.code_hash == secret_digest(code)))
        assert row.sealed_kek is not None  # the KEK travels sealed to the code
        assert (await db.credential(cred.id)).failed_attempts == 0
    status, body = await exchange(http, dep, portal, code, verifier)
    assert status == 200, body
    token = body["access_token"]
    async with Db(dep) as db:
        grant = await db.one(select(sads).where(sads.c.sad_hash == secret_digest(token)))
        assert grant.mac is not None and grant.sealed_kek is not None
    sign = {"credentialID": cred.id, "hashAlgorithmOID": SHA256, "signAlgo": sign_algo(cred)}
    async with Db(dep) as db:  # the grant is under the SAM's MAC like a SAD: an edited count is refused
        this_grant = update(sads).where(sads.c.sad_hash == secret_digest(token))
        before = await db.audit_count("sad.tamper", cred.id)
        await db.execute(this_grant.values(remaining=50))
        status, err = await csc.call("signatures/signHash", {**sign, "hashes": [b64(h1)]}, token)
        assert (status, err["error_description"]) == (400, "Invalid parameter SAD")
        assert await db.audit_count("sad.tamper", cred.id) == before + 1
        await db.execute(this_grant.values(remaining=grant.remaining))
    status, err = await csc.call("signatures/signHash", {**sign, "hashes": [b64(other)]}, token)
    assert (status, err["error_description"]) == (400, "Hash is not authorized by the SAD.")
    status, out = await csc.call("signatures/signHash", {**sign, "hashes": [b64(h1), b64(h2)]}, token)
    assert status == 200, out
    cert = await certificate(csc, await csc.token(), cred)
    for h, s in zip((h1, h2), out["signatures"], strict=True):
        verify(cert, h, base64.b64decode(s))
    status, _ = await csc.call("signatures/signHash", {**sign, "hashes": [b64(h1)]}, token)
    assert status == 400  # spent


async def test_signdoc_pades_with_a_level3_key(csc, dep):
    cred = level3(dep, "l3_doc")
    token = await csc.token()
    pdf = simple_pdf(b"Signed at level 3")
    sad = await csc.sad(token, cred, hashes=[digest(pdf)])
    body = {"credentialID": cred.id, "SAD": sad, "hashAlgorithmOID": SHA256,
            "documents": [{"document": b64(pdf), "signature_format": "P", "conformance_level": "Ades-B-B",
                           "signAlgo": ECDSA_SHA256}]}
    status, out = await csc.call("signatures/signDoc", body, token)
    assert status == 200, out
    signed = base64.b64decode(out["DocumentWithSignature"][0])
    (sig,) = PdfFileReader(BytesIO(signed)).embedded_regular_signatures
    cert_der = await certificate(csc, token, cred)
    assert sig.signer_cert.dump() == cert_der
    status_ = await async_validate_pdf_signature(sig, ValidationContext(
        trust_roots=[], allow_fetching=False, revocation_mode="soft-fail"))
    assert status_.intact and status_.valid
    status, _ = await csc.call("signatures/signDoc", body, token)
    assert status == 400  # one authorized document, one signature


async def _link_eid(ra: RA, cred_id: str, reference: str) -> tuple[int, dict]:
    return await ra.call("manages/linkEid", {"credentialID": cred_id,
                                             "eids": [{"type": "password", "reference": reference}, {"type": "totp"}]})


async def test_ra_enrolled_level3_key(http, dep, csc):
    ra = RA(http, dep, *dep.rotate_manage_secret("local"))  # whatever other tests did to it
    await ra.login()
    gen = await ra.ok("manages/generateKey", {"userID": "alice", "keyAlgo": EC, "curve": P256, "level": 3,
                                              "multisign": 5, "description": "RA level 3"})
    cred_id = gen["credentialID"]
    # the CSR needs the key, which only the enrollment key opens before linkEid: authorize first
    status, err = await _link_eid(ra, cred_id, PIN3)
    assert (status, err["error_description"]) == (400, "For a level-3 key, manages/authorize must come before "
                                                       "manages/linkEid")
    auth = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Level Three,O=Example"})
    csr = x509.load_der_x509_csr(base64.b64decode(auth["csr"]))
    assert csr.is_signature_valid
    assert csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo) == \
        base64.b64decode(gen["publicKey"])
    # the PIN itself (the key is wrapped under a key derived from it), and a level-3 PIN
    status, err = await _link_eid(ra, cred_id, PasswordHasher().hash(PIN3))
    assert status == 400 and "not hashed" in err["error_description"], err
    status, err = await _link_eid(ra, cred_id, "24681357")
    assert status == 400 and "letter and one digit" in err["error_description"], err
    status, linked = await _link_eid(ra, cred_id, PIN3)
    assert status == 200, linked
    assert linked["auth"]["expression"] == "PIN AND OTP"
    status, err = await _link_eid(ra, cred_id, PIN3)  # the enrollment key is gone: once only
    assert (status, err["error_description"]) == (400, "Credential is not in a state that allows this")
    seed = parse_qs(urlparse(linked["otpauthURI"]).query)["secret"][0]
    chain = local_ca_issue(dep, "local", csr.public_bytes(Encoding.DER))
    done = await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})
    assert done["key"]["status"] == "enabled"
    cred = Cred(cred_id, "alice", "ec-p256", 3, PIN3, seed)
    token = await csc.token()
    status, info = await csc.call("credentials/info", {"credentialID": cred_id}, token)
    assert (status, info["SCAL"], info["auth"]["expression"]) == (200, "2", "PIN AND OTP")
    h = digest(f"RA level 3 {time.time_ns()}".encode())
    sad = await csc.sad(token, cred, hashes=[h])
    status, out = await csc.sign(token, cred, sad, [h], ECDSA_SHA256)
    assert status == 200, out
    verify(chain[0], h, base64.b64decode(out["signatures"][0]))
    # deleteKey drops the only copy of the key
    await ra.ok("manages/deleteKey", {"credentialID": cred_id, "reason": "test"})
    async with Db(dep) as db:
        row = await db.credential(cred_id)
        assert row.status == "deleted" and row.wrapped_key is None
