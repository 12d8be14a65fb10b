"""manages/*: the credential lifecycle driven by two CAs' RA systems (DESIGN §3.2).

The deployment has the built-in local CA (registered by ``rssp init``) and a second CA, "cmpca",
registered with ``rssp ca add --connector cmp``, whose root and CMP server are the test's
(:class:`cmp_mock.MockCmp`). The local CA's RA has the local CA issue; the CMP CA's RA sends
rssp's CSR to OpenSSL's ``openssl cmp`` mock over CMP (inside a loopback-only netns) and links
what comes back. Refusal tests issue certificates from that root directly.
"""

from __future__ import annotations

import base64
import json

import aiohttp
import pytest
import pytest_asyncio
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from client import CSC, ECDSA_SHA256, SHA256_RSA, b64, digest
from cmp_mock import MockCmp
from deployment import Cred, Deployment
from manages_helpers import RA, count_rows, credential_row, hsm_has_key, local_ca_issue
from datetime import UTC

RSA = "1.2.840.113549.1.1.1"
EC = "1.2.840.10045.2.1"
P256 = "1.2.840.10045.3.1.7"
BAD_STATE = "Credential is not in a state that allows this"
MISMATCH = "Certificate does not match the credential key"
UNTRUSTED = "Certificate chain is not trusted for this CA"
UNKNOWN = "Invalid parameter credentialID"


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def mdep(request, tmp_path_factory):
    """A deployment with two CAs; ``mdep.manage`` holds each CA's client credentials, ``mdep.cmp_ca`` the root."""
    url = None
    if request.param == "postgresql":  # a database name of its own: test_linkcheck.py builds this fixture too
        url = request.getfixturevalue("pg_cluster").create_database()
    base = tmp_path_factory.mktemp(f"manages-{request.param}")
    directory = base / "instance"
    import os

    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    if url:
        env["RSSP_DATABASE_URL"] = url
    dep = Deployment(directory, url, env)
    summary = dep.rssp_json("init", str(directory))
    dep.add_user("alice", "alice-password")
    dep.add_user("bob", "bob-password")
    mock = MockCmp(base / "cmp-mock")
    added = dep.rssp_json("ca", "add", str(directory), "cmpca", "--connector", "cmp", "--url", mock.url,
                          "--mac-secret-file", str(mock.directory / "secret"), "--reference", "rssp",
                          "--anchor", str(mock.directory / "root.pem"))
    dep.manage = {"local": summary["manageClients"]["local"], "cmpca": added}
    dep.cmp_ca = mock.root
    dep.cmp_mock = mock
    dep.start(workers=2)
    yield dep
    dep.stop()


@pytest_asyncio.fixture
async def ras(http, mdep) -> dict[str, RA]:
    out = {}
    for ca_id, client in mdep.manage.items():
        ra = RA(http, mdep, client["client_id"], client["client_secret"])
        await ra.login()
        out[ca_id] = ra
    return out


async def _enroll_key(ra: RA, *, level: int = 1, key: str = "ec", request_id: str | None = None,
                      user: str = "alice") -> dict:
    body = {"userID": user, "keyAlgo": EC, "curve": P256, "level": level, "multisign": 5,
            "description": "RA-enrolled"}
    if key == "rsa":
        body.update(keyAlgo=RSA, keyLen=2048)
        del body["curve"]
    if request_id:
        body["requestID"] = request_id
    return await ra.ok("manages/generateKey", body)


async def _link_eid(ra: RA, cred_id: str, level: int) -> str | None:
    eids = [{"type": "password", "reference": "246810"}]
    if level == 2:
        eids.append({"type": "totp"})
    out = await ra.ok("manages/linkEid", {"credentialID": cred_id, "eids": eids})
    assert out["auth"]["expression"] == ("PIN AND OTP" if level == 2 else "PIN")
    if level == 2:
        from urllib.parse import parse_qs, urlparse

        return parse_qs(urlparse(out["otpauthURI"]).query)["secret"][0]
    return None


def _csr(out: dict, public_key_b64: str) -> x509.CertificateSigningRequest:
    csr = x509.load_der_x509_csr(base64.b64decode(out["csr"]))
    assert csr.is_signature_valid
    spki = csr.public_key().public_bytes(Encoding.DER, PublicFormat.SubjectPublicKeyInfo)
    assert spki == base64.b64decode(public_key_b64)  # the CSR carries the generated key
    return csr


async def _sign_and_verify(http, mdep, cred: Cred, cert_der: bytes) -> None:
    csc = CSC(http, mdep)
    token = await csc.token(cred.user)
    status, listed = await csc.call("credentials/list", {}, token)
    assert status == 200 and cred.id in listed["credentialIDs"]
    h = digest(b"signed under the subscriber's sole control")
    hashes_ = [h] if cred.level == 2 else None
    sad = await csc.sad(token, cred, hashes=hashes_ if hashes_ else None)
    algo = ECDSA_SHA256 if cred.key == "ec" else SHA256_RSA
    status, out = await csc.sign(token, cred, sad, [h], algo)
    assert status == 200, out
    signature = base64.b64decode(out["signatures"][0])
    public = x509.load_der_x509_certificate(cert_der).public_key()
    if cred.key == "ec":
        assert isinstance(public, ec.EllipticCurvePublicKey), public
        public.verify(signature, h, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        assert isinstance(public, rsa.RSAPublicKey), public
        public.verify(signature, h, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


async def _full_flow(http, mdep, ra: RA, issue, *, level: int, key: str) -> Cred:
    gen = await _enroll_key(ra, level=level, key=key)
    cred_id = gen["credentialID"]
    assert gen["key"]["status"] == "disabled"
    csc = CSC(http, mdep)
    alice = await csc.token("alice")
    status, listed = await csc.call("credentials/list", {}, alice)
    assert cred_id not in listed["credentialIDs"]  # not the signer's credential before linkCert
    seed = await _link_eid(ra, cred_id, level)
    auth = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Taro Yamada,O=Example,C=JP"})
    csr = _csr(auth, gen["publicKey"])
    assert csr.subject.rfc4514_string() == "CN=Taro Yamada,O=Example,C=JP"
    chain = issue(csr.public_bytes(Encoding.DER), base64.b64decode(gen["publicKey"]))
    linked = await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})
    assert linked["key"]["status"] == "enabled"
    cred = Cred(cred_id, "alice", key, level, "246810", seed)
    await _sign_and_verify(http, mdep, cred, chain[0])
    return cred


async def _delete_and_check(http, mdep, ra: RA, cred: Cred) -> None:
    key_id = credential_row(mdep, cred.id)["hsm_key_id"]
    assert hsm_has_key(mdep, key_id) == {"private": True, "public": True}
    csc = CSC(http, mdep)
    token = await csc.token(cred.user)
    sad = await csc.sad(token, cred, hashes=[digest(b"after delete")] if cred.level == 2 else None)
    out = await ra.ok("manages/deleteKey", {"credentialID": cred.id, "reason": "subscriber request",
                                            "requestID": f"del-{cred.id}"})
    assert out["key"]["status"] == "deleted"
    status, body = await csc.sign(token, cred, sad, [digest(b"after delete")],
                                  ECDSA_SHA256 if cred.key == "ec" else SHA256_RSA)
    assert status == 400, body
    assert hsm_has_key(mdep, key_id) == {"private": False, "public": False}
    assert credential_row(mdep, cred.id)["status"] == "deleted"
    # a replayed requestID changes nothing and answers the same
    again = await ra.ok("manages/deleteKey", {"credentialID": cred.id, "reason": "subscriber request",
                                              "requestID": f"del-{cred.id}"})
    assert again == out


async def test_ra_flow_local_ca(http, mdep, ras):
    ra = ras["local"]

    def issue(csr_der: bytes, _spki: bytes) -> list[bytes]:
        return local_ca_issue(mdep, "local", csr_der)

    for level, key in ((1, "ec"), (2, "rsa")):
        cred = await _full_flow(http, mdep, ra, issue, level=level, key=key)
        await _delete_and_check(http, mdep, ra, cred)


async def test_ra_flow_cmp_ca(http, mdep, ras):
    """The second CA's RA sends rssp's CSR to its CA over CMP (the openssl mock, in a netns) and links."""
    ra, mock = ras["cmpca"], mdep.cmp_mock

    def issue(csr_der: bytes, spki: bytes) -> list[bytes]:
        csr_path = mock.directory / "ra-request.der"
        csr_path.write_bytes(csr_der)
        rsp = mock.rsp_cert_for(spki, subject="CN=Taro Yamada,O=Example,C=JP")  # the mock's one answer
        out = mock.enroll(mock.connector_config(), csr_path, mock.server_command(rsp))
        assert "certificate" in out, out
        return [base64.b64decode(out["certificate"]), *(base64.b64decode(c) for c in out["chain"])]

    for level, key in ((2, "ec"), (1, "rsa")):
        cred = await _full_flow(http, mdep, ra, issue, level=level, key=key)
        await _delete_and_check(http, mdep, ra, cred)


async def test_ra_flow_second_ca_direct_issue(http, mdep, ras):
    """The second CA's RA, with certificates from that CA's root (the CMP leg is in test_cmp.py)."""
    ra = ras["cmpca"]

    def issue(_csr_der: bytes, spki: bytes) -> list[bytes]:
        return [mdep.cmp_ca.issue(spki, "CN=Taro Yamada,O=Example,C=JP"), mdep.cmp_ca.der]

    cred = await _full_flow(http, mdep, ra, issue, level=1, key="ec")
    await _delete_and_check(http, mdep, ra, cred)


# ============================================================================ refusals

async def _ready_for_cert(ra: RA, **kwargs) -> tuple[str, bytes, bytes]:
    """A key with its factors linked and its CSR taken: (credentialID, SPKI DER, CSR DER)."""
    gen = await _enroll_key(ra, **kwargs)
    await _link_eid(ra, gen["credentialID"], kwargs.get("level", 1))
    auth = await ra.ok("manages/authorize", {"credentialID": gen["credentialID"], "subjectDN": "CN=Hanako"})
    return gen["credentialID"], base64.b64decode(gen["publicKey"]), base64.b64decode(auth["csr"])


async def _refused(ra: RA, method: str, body: dict, description: str, status: int = 400) -> None:
    got, out = await ra.call(method, body)
    assert (got, out.get("error_description")) == (status, description), out


async def test_link_cert_refusals(mdep, ras):
    ra = ras["cmpca"]
    cred_id, spki, csr = await _ready_for_cert(ra)
    root = mdep.cmp_ca
    other_key = ec.generate_private_key(ec.SECP256R1()).public_key().public_bytes(Encoding.DER,
                                                                                   PublicFormat.SubjectPublicKeyInfo)
    # a certificate for another public key
    await _refused(ra, "manages/linkCert", {"credentialID": cred_id,
                                            "certificates": [b64(root.issue(other_key)), b64(root.der)]}, MISMATCH)
    # the right key, but a chain from the other CA (the local one)
    from_local = local_ca_issue(mdep, "local", csr)
    await _refused(ra, "manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in from_local]},
                   UNTRUSTED)
    # the right key and CA, but not for signing / not valid now
    await _refused(ra, "manages/linkCert", {"credentialID": cred_id, "certificates": [
        b64(root.issue(spki, key_usage="encipherment"))]}, "Certificate key usage does not allow signing")
    from datetime import datetime, timedelta

    expired = root.issue(spki, days=1, not_before=datetime.now(UTC) - timedelta(days=3))
    await _refused(ra, "manages/linkCert", {"credentialID": cred_id, "certificates": [b64(expired)]},
                   "Certificate is not valid at this time")
    # garbage
    await _refused(ra, "manages/linkCert", {"credentialID": cred_id, "certificates": ["bm90IGEgY2VydA=="]},
                   "Invalid parameter certificates")
    # nothing above changed the credential: the right certificate links, once
    good = {"credentialID": cred_id, "certificates": [b64(root.issue(spki)), b64(root.der)]}
    await ra.ok("manages/linkCert", good)
    await _refused(ra, "manages/linkCert", good, BAD_STATE)
    # no CSR and no new factors once the certificate is linked
    await _refused(ra, "manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Again"}, BAD_STATE)
    await _refused(ra, "manages/linkEid", {"credentialID": cred_id, "eids": [{"type": "password",
                                                                             "reference": "1111"}]}, BAD_STATE)


async def test_csr_only_once_and_cert_needs_factors(ras, mdep):
    ra = ras["local"]
    gen = await _enroll_key(ra)
    cred_id = gen["credentialID"]
    auth = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Once"})
    await _refused(ra, "manages/authorize", {"credentialID": cred_id, "subjectDN": "CN=Twice"}, BAD_STATE)
    chain = local_ca_issue(mdep, "local", base64.b64decode(auth["csr"]))
    # no factors linked yet: the key cannot become a usable credential
    await _refused(ra, "manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]},
                   BAD_STATE)
    await _link_eid(ra, cred_id, 1)
    await ra.ok("manages/linkCert", {"credentialID": cred_id, "certificates": [b64(c) for c in chain]})


async def test_a_ca_cannot_see_another_cas_credentials(ras):
    mine = (await _enroll_key(ras["local"]))["credentialID"]
    other = ras["cmpca"]
    for method, body in (
        ("manages/linkEid", {"credentialID": mine, "eids": [{"type": "password", "reference": "1234"}]}),
        ("manages/authorize", {"credentialID": mine, "subjectDN": "CN=x"}),
        ("manages/linkCert", {"credentialID": mine, "certificates": [b64(b"x" * 10)]}),
        ("manages/deleteKey", {"credentialID": mine, "requestID": "steal-1"}),
        ("manages/deleteKey", {"credentialID": "0" * 24}),
    ):
        await _refused(other, method, body, UNKNOWN)
    # the owner still can (the refusals changed nothing)
    await ras["local"].ok("manages/deleteKey", {"credentialID": mine})


async def test_manage_and_service_tokens_stay_in_their_lanes(http, mdep, ras):
    csc = CSC(http, mdep)
    manage = ras["local"].token
    for method in ("credentials/list", "credentials/info", "credentials/authorize", "signatures/signHash",
                   "auth/revoke"):
        status, out = await csc.call(method, {"credentialID": "x"}, manage)
        assert (status, out["error"]) == (401, "invalid_token"), (method, out)
    service = await csc.token("alice")
    for method in ("manages/generateKey", "manages/linkEid", "manages/authorize", "manages/linkCert",
                   "manages/deleteKey"):
        status, out = await ras["local"].call(method, {"credentialID": "x"}, service)
        assert (status, out["error"]) == (401, "invalid_token"), (method, out)


LOGIN_FAILED = (400, {"error": "authentication_error",
                      "error_description": "An error occurred during authentication process"})


async def _login_answer(http, dep: Deployment, client_id: str, secret: str) -> tuple[int, dict]:
    """manages/login's status and body, whatever they are (RA.login asserts a success)."""
    async with http.post(f"{dep.base}/csc/v2/manages/login", json={},
                         headers={"Authorization": aiohttp.encode_basic_auth(client_id, secret)}) as resp:
        return resp.status, await resp.json(content_type=None)


async def test_login_refuses_wrong_secrets_and_rotation_retires_the_old_one(http, mdep):
    client = mdep.manage["local"]
    assert await _login_answer(http, mdep, client["client_id"], client["client_secret"] + "x") == LOGIN_FAILED
    assert await _login_answer(http, mdep, "ca-unknown", client["client_secret"]) == LOGIN_FAILED
    rotated = mdep.rssp_json("ca", "secret", str(mdep.directory), "local")
    try:
        assert await _login_answer(http, mdep, client["client_id"], client["client_secret"]) == LOGIN_FAILED
        await RA(http, mdep, rotated["client_id"], rotated["client_secret"]).login()
    finally:
        mdep.manage["local"] = rotated


async def test_request_id_replay_creates_and_deletes_nothing_new(ras, mdep):
    ra = ras["local"]
    before = count_rows(mdep, "credentials", ca_id="local")
    first = await _enroll_key(ra, request_id="gen-replay-1")
    again = await _enroll_key(ra, request_id="gen-replay-1")
    assert again == first
    assert count_rows(mdep, "credentials", ca_id="local") == before + 1
    # the same requestID for another request is refused
    status, out = await ra.call("manages/generateKey", {"userID": "bob", "keyAlgo": EC, "curve": P256, "level": 1,
                                                        "requestID": "gen-replay-1"})
    assert status == 400 and "requestID" in out["error_description"], out
    assert count_rows(mdep, "credentials", ca_id="local") == before + 1
    cred_id = first["credentialID"]
    deleted = await ra.ok("manages/deleteKey", {"credentialID": cred_id, "requestID": "del-replay-1"})
    assert await ra.ok("manages/deleteKey", {"credentialID": cred_id, "requestID": "del-replay-1"}) == deleted
    # without the requestID, a second delete finds nothing to delete
    await _refused(ra, "manages/deleteKey", {"credentialID": cred_id}, UNKNOWN)
    assert count_rows(mdep, "credentials", id=cred_id, status="deleted") == 1


async def test_generate_key_checks_its_input(ras):
    ra = ras["local"]
    cases = [
        ({"userID": "nobody", "keyAlgo": EC, "curve": P256, "level": 1}, "Invalid parameter userID"),
        ({"userID": "alice", "keyAlgo": "1.2.3", "level": 1}, "Invalid parameter keyAlgo"),
        ({"userID": "alice", "keyAlgo": RSA, "keyLen": 1024, "level": 1}, "Invalid parameter keyLen"),
        ({"userID": "alice", "keyAlgo": EC, "curve": "1.3.132.0.10", "level": 1}, "Invalid parameter curve"),
        ({"userID": "alice", "keyAlgo": EC, "curve": P256, "level": 4}, "Invalid parameter level"),
        ({"userID": "alice", "keyAlgo": EC, "curve": P256, "level": 1, "multisign": 0}, "Invalid parameter multisign"),
    ]
    for body, description in cases:
        await _refused(ra, "manages/generateKey", body, description)
    gen = await _enroll_key(ra, level=2)
    # level 2 needs a second factor
    await _refused(ra, "manages/linkEid", {"credentialID": gen["credentialID"],
                                           "eids": [{"type": "password", "reference": "1234"}]},
                   "Invalid parameter eids")
    await _refused(ra, "manages/linkEid", {"credentialID": gen["credentialID"], "expression": "PIN",
                                           "eids": [{"type": "password", "reference": "1234"}, {"type": "totp"}]},
                   "Invalid parameter expression")


async def test_every_call_is_audited_without_secrets(mdep, ras):
    await ras["cmpca"].call("manages/authorize", {"credentialID": "nope", "subjectDN": "CN=x"})
    done = mdep.rssp("audit", "list", str(mdep.directory), "--limit", "500", "--json")
    rows = json.loads(done.stdout)
    actions = {(r["action"], r["outcome"]) for r in rows}
    for expected in (("manages.login", "ok"), ("manages.generateKey", "ok"), ("manages.linkEid", "ok"),
                     ("manages.authorize", "ok"), ("manages.linkCert", "ok"), ("manages.deleteKey", "ok"),
                     ("manages.authorize", "refused"), ("manages.linkCert", "refused")):
        assert expected in actions, expected
    text = done.stdout
    for client in mdep.manage.values():
        assert client["client_secret"] not in text
    assert "246810" not in text  # the PINs the RA linked
