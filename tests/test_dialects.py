"""Tolerant input (docs/api.md "Tolerant input"): each variant real clients send, one by one, and
the strictness around it. Against the running server on SQLite and PostgreSQL.

The aliases are mapped in one place (rssp.api.aliases) before any handler runs, so each is
tested on one method and holds for all.
"""

from __future__ import annotations

import base64

from asn1crypto import algos, cms
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from client import ECDSA_SHA256, SHA256, SHA256_RSA, b64, digest
from oauth_helpers import b64url, verify_signature
from test_csc_flow import certificate

RSASSA_PSS = "1.2.840.113549.1.1.10"


async def _sad(csc, token, cred, hashes):
    return await csc.sad(token, cred, num=len(hashes), hashes=hashes)


async def test_swift_snake_case_sign_hash(csc, dep):
    """eudi-lib-ios-rqes-csc-swift SignHashRequest: credential_id, hash_algorithm_oid, sign_algo,
    operation_mode, client_data (and the SAD as usual)."""
    token, cred = await csc.token(), dep.creds["p256"]
    d = digest(b"swift")
    body = {"credential_id": cred.id, "SAD": await _sad(csc, token, cred, [d]), "hashes": [b64(d)],
            "hash_algorithm_oid": SHA256, "sign_algo": ECDSA_SHA256, "operation_mode": "S",
            "client_data": "from the Swift library"}
    status, out = await csc.call("signatures/signHash", body, token)
    assert status == 200, out
    verify_signature(await certificate(csc, token, cred), d, base64.b64decode(out["signatures"][0]))


async def test_sign_algo_params_in_snake_case(csc, dep):
    """RSASSA-PSS parameters sent as sign_algo_params (the Swift coding key) are used."""
    token, cred = await csc.token(), dep.creds["rsa2048"]
    d = digest(b"pss via snake case")
    params = algos.RSASSAPSSParams({"hash_algorithm": {"algorithm": "sha256"},
                                    "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
                                    "salt_length": 32}).dump()
    body = {"credentialID": cred.id, "SAD": await _sad(csc, token, cred, [d]), "hashes": [b64(d)],
            "hashAlgorithmOID": SHA256, "sign_algo": RSASSA_PSS, "sign_algo_params": b64(params)}
    status, out = await csc.call("signatures/signHash", body, token)
    assert status == 200, out
    cert = await certificate(csc, token, cred)
    cert.public_key().verify(base64.b64decode(out["signatures"][0]), d,
                             padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), Prehashed(hashes.SHA256()))


async def test_num_signatures_in_snake_case_and_base64url_hashes(csc, dep):
    """CSCCredentialsAuthorizeRequest (Swift) sends num_signatures; digests in base64url are the same digests."""
    token, cred = await csc.token(), dep.creds["p256"]
    d = digest(b"base64url")
    status, out = await csc.call("credentials/authorize", {
        "credentialID": cred.id, "num_signatures": 1, "hashes": [b64url(d)], "hashAlgorithmOID": SHA256,
        "authData": [{"id": "PIN", "value": cred.pin}]}, token)
    assert status == 200, out
    status, signed = await csc.sign(token, cred, out["SAD"], [d], ECDSA_SHA256)
    assert status == 200, signed


async def test_null_means_absent_for_optional_fields(csc, dep):
    """kotlinx.serialization sends absent optionals as null (EUDI Kotlin: signAlgoParams: null)."""
    token, cred = await csc.token(), dep.creds["p256"]
    d = digest(b"nulls")
    body = {"credentialID": cred.id, "SAD": await _sad(csc, token, cred, [d]), "hashes": [b64(d)],
            "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256, "signAlgoParams": None, "operationMode": None,
            "validity_period": None, "response_uri": None, "clientData": None, "client_data": None}
    status, out = await csc.call("signatures/signHash", body, token)
    assert status == 200, out
    status, out = await csc.call("credentials/list", {"credentialInfo": None, "certificates": None, "certInfo": None,
                                                      "authInfo": None, "onlyValid": None, "lang": None}, token)
    assert status == 200 and "credentialInfos" not in out


async def test_snake_case_inside_sign_doc_entries(csc, dep):
    """Swift DocumentDigest coding keys: hash_algorithm_oid and sign_algo inside documentDigests."""
    token, cred = await csc.token(), dep.creds["p256"]
    d = digest(b"signDoc entry in snake case")
    entry = {"hashes": [b64(d)], "hash_algorithm_oid": SHA256, "signature_format": "C",
             "conformance_level": "Ades-B-B", "sign_algo": ECDSA_SHA256, "signed_envelope_property": "Detached"}
    body = {"credentialID": cred.id, "SAD": await _sad(csc, token, cred, [d]), "documentDigests": [entry]}
    status, out = await csc.call("signatures/signDoc", body, token)
    assert status == 200, out
    signed = cms.ContentInfo.load(base64.b64decode(out["SignatureObject"][0]))
    attrs = {a["type"].native: a["values"][0].native for a in signed["content"]["signer_infos"][0]["signed_attrs"]}
    assert attrs["message_digest"] == d


async def test_strict_everywhere_else(csc, dep):
    """An alias beside its canonical name, unknown OIDs, wrong lengths and wrong types stay 400s."""
    token, cred = await csc.token(), dep.creds["p256"]
    d = digest(b"strict")
    sad = await _sad(csc, token, cred, [d])
    base = {"credentialID": cred.id, "SAD": sad, "hashes": [b64(d)], "hashAlgorithmOID": SHA256,
            "signAlgo": ECDSA_SHA256}
    cases = [
        ({"sign_algo": SHA256_RSA}, "Both sign_algo and signAlgo parameters passed"),  # two names for one field
        ({"credential_id": "another"}, "Both credential_id and credentialID parameters passed"),
        ({"signAlgo": None, "sign_algo": "1.2.3.4"}, "Invalid parameter signAlgo"),
        ({"hashAlgorithmOID": None, "hash_algorithm_oid": "1.3.14.3.2.26"}, "Invalid parameter hashAlgorithmOID"),
        ({"hashes": [b64(d[:20])]}, "Invalid digest value length"),
        ({"sign_algo_params": 5}, "Missing (or invalid type) string parameter signAlgoParams"),
        ({"hashes": ["!!" + b64(d)[2:]]}, "Invalid Base64 hash string parameter"),
        ({"signAlgo": None, "signalgo": ECDSA_SHA256}, "Missing (or invalid type) string parameter signAlgo"),
        ({"client_data": 7}, "Invalid parameter clientData"),
    ]
    for change, description in cases:
        status, err = await csc.call("signatures/signHash", {**base, **change}, token)
        assert (status, err["error_description"]) == (400, description), (change, err)
    status, err = await csc.call("signatures/signHash", {**base, "sign_algo": ECDSA_SHA256}, token)  # equal too
    assert (status, err["error_description"]) == (400, "Both sign_algo and signAlgo parameters passed"), err
    status, out = await csc.call("signatures/signHash", base, token)
    assert status == 200 and len(out["signatures"]) == 1  # and the refusals above spent nothing
