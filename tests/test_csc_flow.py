"""The CSC v2 session a signature application runs: info, login, list, info, authorize, sign."""

from __future__ import annotations

import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, padding
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives import hashes
from asn1crypto import algos

from client import ECDSA_SHA256, SHA256, SHA256_RSA, SHA384, SHA512, b64, digest

import base64

HASHES = {SHA256: (hashes.SHA256, "sha256"), SHA384: (hashes.SHA384, "sha384"), SHA512: (hashes.SHA512, "sha512")}


async def certificate(csc, token, cred) -> x509.Certificate:
    status, body = await csc.call("credentials/info", {"credentialID": cred.id, "certificates": "single"}, token)
    assert status == 200, body
    return x509.load_der_x509_certificate(base64.b64decode(body["cert"]["certificates"][0]))


CSC_METHODS = (
    "info", "auth/login", "auth/revoke", "credentials/list", "credentials/info", "credentials/authorize",
    "credentials/authorizeCheck", "credentials/getChallenge", "credentials/extendTransaction", "credentials/sendOTP",
    "credentials/create", "credentials/delete", "signatures/signHash", "signatures/signDoc", "signatures/signPolling",
    "signatures/timestamp",
)


async def test_info_lists_exactly_the_mounted_methods(csc):
    status, body = await csc.call("info", {})
    assert status == 200
    assert body["specs"] == "2.2.0.0"
    assert body["extensions"] == {"jt2a": "1"}
    assert "supportedHashTypes" in body and "SHA-256" in body["supportedHashTypes"]
    # every listed method is there, and none but info answers a caller who presents nothing
    answers = {method: await csc.call(method, {}) for method in body["methods"]}
    assert answers.pop("info") == (200, body)
    no_token = (401, {"error": "invalid_token", "error_description": "Missing access token"})
    no_password = (401, {"error": "invalid_request", "error_description": "Malformed authentication parameter."})
    for method, answer in answers.items():
        assert answer == (no_password if method in ("auth/login", "manages/login") else no_token), method
    for method in CSC_METHODS:  # every method of the specification: listed exactly when mounted (else 501)
        s, out = await csc.call(method, {})
        assert (s != 501) == (method in body["methods"]), method
        assert s == 501 or out.get("error") != "not_implemented", method


async def test_info_accepts_an_empty_body(csc, http, dep):
    async with http.post(f"{dep.base}/csc/v2/info") as resp:
        assert resp.status == 200
        answer = await resp.json()
    assert answer == (await csc.call("info", {}))[1]  # the same as for {}
    assert answer["specs"] == "2.2.0.0" and "signatures/signHash" in answer["methods"]


async def test_list_shows_only_own_credentials(csc, dep):
    alice, bob = await csc.token("alice"), await csc.token("bob")
    _, mine = await csc.call("credentials/list", {}, alice)
    _, theirs = await csc.call("credentials/list", {}, bob)
    assert dep.creds["rsa2048"].id in mine["credentialIDs"]
    assert dep.creds["bob"].id not in mine["credentialIDs"]
    assert theirs["credentialIDs"] == [dep.creds["bob"].id]


async def test_list_with_credential_info_and_chain(csc, dep):
    token = await csc.token()
    status, body = await csc.call("credentials/list", {"credentialInfo": True, "certificates": "chain",
                                                       "certInfo": True, "authInfo": True, "onlyValid": True}, token)
    assert status == 200, body
    assert body["onlyValid"] is True
    infos = {i["credentialID"]: i for i in body["credentialInfos"]}
    info = infos[dep.creds["l2_p256"].id]
    assert info["SCAL"] == "2" and info["auth"]["expression"] == "PIN AND OTP"
    assert [o["id"] for o in info["auth"]["objects"]] == ["PIN", "OTP"]
    assert len(info["cert"]["certificates"]) == 2
    assert info["cert"]["subjectDN"] == "CN=alice"
    assert len(info["cert"]["validFrom"]) == 15 and info["cert"]["validTo"].endswith("Z")


async def test_credentials_info_fields(csc, dep):
    token = await csc.token()
    status, body = await csc.call("credentials/info", {"credentialID": dep.creds["p384"].id, "certificates": "none"},
                                  token)
    assert status == 200
    assert body["key"] == {"status": "enabled", "algo": ["1.2.840.10045.2.1", "1.2.840.10045.4.3.2",
                                                         "1.2.840.10045.4.3.3", "1.2.840.10045.4.3.4"],
                           "len": 384, "curve": "1.3.132.0.34"}
    assert "certificates" not in body["cert"]
    assert body["SCAL"] == "1" and body["multisign"] == 10 and body["auth"]["mode"] == "explicit"


async def test_someone_elses_credential_looks_unknown(csc, dep):
    token = await csc.token("alice")
    _, other = await csc.call("credentials/info", {"credentialID": dep.creds["bob"].id}, token)
    _, unknown = await csc.call("credentials/info", {"credentialID": "no-such-credential"}, token)
    assert other == unknown == {"error": "invalid_request", "error_description": "Invalid parameter credentialID"}


@pytest.mark.parametrize(
    "name,sign_algo,hash_oid",
    [
        ("rsa2048", SHA256_RSA, SHA256),
        ("rsa2048", "1.2.840.113549.1.1.12", SHA384),
        ("rsa2048", "1.2.840.113549.1.1.13", SHA512),
        ("rsa2048", "1.2.840.113549.1.1.1", SHA256),
        ("rsa3072", SHA256_RSA, SHA256),
        ("p256", ECDSA_SHA256, SHA256),
        ("p256", "1.2.840.10045.4.3.3", SHA384),
        ("p256", "1.2.840.10045.2.1", SHA512),
        ("p384", "1.2.840.10045.4.3.3", SHA384),
    ],
)
async def test_signhash_signatures_verify(csc, dep, name, sign_algo, hash_oid):
    cred = dep.creds[name]
    token = await csc.token()
    algo, hname = HASHES[hash_oid]
    digests = [digest(f"document {i}".encode(), hname) for i in range(3)]
    sad = await csc.sad(token, cred, num=3, hashes=digests, hash_oid=hash_oid)
    status, body = await csc.sign(token, cred, sad, digests, sign_algo, hash_oid)
    assert status == 200, body
    public_key = (await certificate(csc, token, cred)).public_key()
    assert len(body["signatures"]) == 3
    for d, s in zip(digests, body["signatures"], strict=True):
        sig = base64.b64decode(s)
        if isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(sig, d, ec.ECDSA(Prehashed(algo())))
        else:
            public_key.verify(sig, d, padding.PKCS1v15(), Prehashed(algo()))


async def test_signhash_rsassa_pss(csc, dep):
    cred = dep.creds["rsa2048"]
    token = await csc.token()
    params = algos.RSASSAPSSParams({
        "hash_algorithm": {"algorithm": "sha256"},
        "mask_gen_algorithm": {"algorithm": "mgf1", "parameters": {"algorithm": "sha256"}},
        "salt_length": 32,
    }).dump()
    d = digest(b"pss document")
    sad = await csc.sad(token, cred, hashes=[d])
    status, body = await csc.sign(token, cred, sad, [d], "1.2.840.113549.1.1.10", SHA256, params)
    assert status == 200, body
    public_key = (await certificate(csc, token, cred)).public_key()
    public_key.verify(base64.b64decode(body["signatures"][0]), d,
                      padding.PSS(mgf=padding.MGF1(hashes.SHA256()), salt_length=32), Prehashed(hashes.SHA256()))


async def test_level2_signing_with_pin_and_totp(csc, dep):
    cred = dep.creds["l2_p256"]
    token = await csc.token()
    digests = [digest(b"contract A"), digest(b"contract B")]
    sad = await csc.sad(token, cred, num=2, hashes=digests)
    status, body = await csc.sign(token, cred, sad, digests, ECDSA_SHA256)
    assert status == 200, body
    assert len(body["signatures"]) == 2


async def test_level2_requires_hashes_and_the_otp(csc, dep):
    cred = dep.creds["l2_rsa"]
    token = await csc.token()
    status, body = await csc.call("credentials/authorize", {"credentialID": cred.id, "numSignatures": 1,
                                                            "authData": [{"id": "PIN", "value": cred.pin}]}, token)
    assert status == 400 and body["error_description"] == "Missing (or invalid type) array parameter hashes"
    request = {"credentialID": cred.id, "numSignatures": 1, "hashes": [b64(digest(b"x"))], "hashAlgorithmOID": SHA256,
               "authData": [{"id": "PIN", "value": cred.pin}]}
    status, body = await csc.call("credentials/authorize", request, token)
    assert (status, body["error_description"]) == (400, "Missing (or invalid type) array parameter authData")
    request["authData"].append({"id": "OTP", "value": "000000"})
    status, body = await csc.call("credentials/authorize", request, token)
    assert status == 400 and body["error"] == "invalid_authentication_data"


async def test_extend_transaction_replaces_the_sad(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    digests = [digest(b"one"), digest(b"two")]
    sad = await csc.sad(token, cred, num=2, hashes=digests)
    status, body = await csc.sign(token, cred, sad, digests[:1], ECDSA_SHA256)
    assert status == 200
    status, ext = await csc.call("credentials/extendTransaction", {"credentialID": cred.id, "SAD": sad}, token)
    assert status == 200, ext
    new_sad = ext["SAD"]
    assert new_sad != sad
    status, _ = await csc.sign(token, cred, sad, digests[1:], ECDSA_SHA256)
    assert status == 400  # the old SAD is consumed
    status, _ = await csc.sign(token, cred, new_sad, digests[:1], ECDSA_SHA256)
    assert status == 400  # the used hash did not carry over
    status, body = await csc.sign(token, cred, new_sad, digests[1:], ECDSA_SHA256)
    assert status == 200, body


async def test_login_refresh_and_revoke(csc):
    tokens = await csc.login("alice", remember=True)
    access, refresh = tokens["access_token"], tokens["refresh_token"]
    status, fresh = await csc.call("auth/login", {"refresh_token": refresh})
    assert status == 200 and fresh["refresh_token"] != refresh
    status, _ = await csc.call("auth/revoke", {"token": access, "token_type_hint": "access_token"}, access)
    assert status == 204
    status, body = await csc.call("credentials/list", {}, access)
    assert status == 401 and body["error"] == "expired_token"
    new_access = fresh["access_token"]
    status, _ = await csc.call("auth/revoke", {"token": fresh["refresh_token"]}, new_access)
    assert status == 204
    status, _ = await csc.call("credentials/list", {}, new_access)
    assert status == 401  # revoking the refresh token ended its grant
    status, _ = await csc.call("auth/login", {"refresh_token": refresh})
    assert status == 400  # rotated: the old refresh token is spent (reuse revokes the grant: test_token_security)


async def test_wrong_password_is_refused(csc, http, dep):
    import aiohttp

    async with http.post(f"{dep.base}/csc/v2/auth/login", json={},
                         auth=aiohttp.BasicAuth("alice", "wrong")) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"] == "authentication_error"
