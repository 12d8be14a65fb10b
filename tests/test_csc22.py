"""CSC API v2.2: info, credentials/create and credentials/delete with the 2025 OAuth types.

Against the running server on SQLite and PostgreSQL. Each test that makes credentials does so
for a signer of its own (credentials/create counts a signer's live credentials).
"""

from __future__ import annotations

import asyncio
import base64
import json

from sqlalchemy import select

from client import ECDSA_SHA256, SHA256, b64, digest
from deployment import EUDI_POLICY
from lifecycle_helpers import (
    URI, approve, creation, deletion, lifecycle_client, made, otp_for, signer_of_own, token_for,
)
from manages_helpers import hsm_has_key
from oauth_helpers import auth_params, pkce, verify_signature
from rssp.store import open_store
from rssp.store.schema import credentials, users
from test_csc_flow import certificate

WRONG_SCOPE = (401, {"error": "invalid_token", "error_description": "The access token is not valid for this method"})


async def _create(csc, http, dep, user: str, **params: str):
    granted = await token_for(http, dep, user, authorization_details=creation(EUDI_POLICY), **params)
    body = {"credentialCreationRequest": {"certificatePolicy": EUDI_POLICY}, "credentialInfo": True,
            "certificates": "single", "certInfo": True}
    status, out = await csc.call("credentials/create", body, granted["access_token"])
    assert status == 201, out
    return granted, out


async def _live(dep, username: str) -> list[tuple[str, str, str]]:
    """(credential ID, status, HSM key ID) of every credential of the user, deleted ones included."""
    store = open_store(dep.db_url)
    try:
        async with store.read() as conn:
            uid = (await conn.execute(select(users.c.id).where(users.c.username == username))).scalar()
            rows = (await conn.execute(select(credentials.c.id, credentials.c.status, credentials.c.hsm_key_id)
                                       .where(credentials.c.user_id == uid))).all()
            return [(r.id, r.status, r.hsm_key_id) for r in rows]
    finally:
        await store.close()


# ---------------------------------------------------------------------------- info

async def test_info_answers_csc_2_2_on_v2_and_1_0_4_on_v1(csc, http, dep):
    status, v2 = await csc.call("info", {})
    assert status == 200 and v2["specs"] == "2.2.0.0"
    assert {"credentials/create", "credentials/delete"} <= set(v2["methods"])
    assert v2["documentTypes"] == ["sod"] and v2["signature_formats"]["allowMix"] is True
    assert v2["conformance_levels"] and "SHA-256" in v2["supportedHashTypes"]
    assert [k for k in ("oauth2", "oauth2Issuer", "oauth2Servers") if k in v2] == ["oauth2Issuer"]  # exactly one
    async with http.post(f"{dep.base}/csc/v1/info", json={}) as resp:
        v1 = await resp.json()
    assert v1["specs"] == "1.0.4.0" and "oauth2Issuer" not in v1
    # v1 clients (documenso) join oauth2/authorize to `oauth2`: it must reach the AS
    async with http.get(f"{v1['oauth2']}/oauth2/authorize", allow_redirects=False) as resp:
        assert resp.status == 400 and "client_id" in await resp.text()  # the AS's own error page, not a 404


# ---------------------------------------------------------------------------- create -> sign -> delete

async def test_create_sign_delete_with_the_v2_2_scopes(csc, http, dep):
    user = signer_of_own(dep, "carol")
    before = [c for c in await _live(dep, user) if c[1] != "deleted"]
    creator, out = await _create(csc, http, dep, user)
    new = made(out)
    assert creator["scope"] == "credential-creation" and "refresh_token" not in creator
    assert out["key"]["status"] == "enabled" and out["cert"]["subjectDN"] == "CN=carol" and out["SCAL"] == "1"
    assert len(new.pin) == 6 and new.pin.isdigit() and "otpauthURI" not in out  # the default policy: level 1
    assert len([c for c in await _live(dep, user) if c[1] != "deleted"]) == len(before) + 1
    # the new credential signs, through OAuth credential authorization (2025 RAR, hashType in any case)
    cred = new.as_cred(user)
    signed = digest(b"made by credentials/create")
    rar = json.dumps([{"type": f"{URI}credential", "credentialID": new.id, "numSignatures": 1,
                       "documentDigests": [{"hash": b64(signed), "label": "contract", "hashType": "sdr"}],
                       "hashAlgorithmOID": SHA256}])
    signing = await token_for(http, dep, user, authorization_details=rar, pin=new.pin, otp=otp_for(cred))
    status, sig = await csc.call("signatures/signHash", {"credentialID": new.id, "hashes": [b64(signed)],
                                                         "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256},
                                 signing["access_token"])
    assert status == 200, sig
    service = await csc.token(user)
    verify_signature(await certificate(csc, service, cred), signed, base64.b64decode(sig["signatures"][0]))
    # deleted with a credential-deletion token the signer approved with the credential's PIN
    key_id = next(k for i, _, k in await _live(dep, user) if i == new.id)
    assert hsm_has_key(dep, key_id)["private"]
    deleter = await token_for(http, dep, user, authorization_details=deletion(new.id), pin=new.pin)
    assert deleter["scope"] == "credential-deletion" and deleter["credentialID"] == new.id
    status, body = await csc.call("credentials/delete", {"credentialID": new.id}, deleter["access_token"])
    assert (status, body) == (204, None)
    assert hsm_has_key(dep, key_id) == {"private": False, "public": False}
    assert (new.id, "deleted") in [(i, s) for i, s, _ in await _live(dep, user)]  # the row stays, deleted
    status, listed = await csc.call("credentials/list", {}, service)
    assert new.id not in listed["credentialIDs"]
    status, err = await csc.call("credentials/info", {"credentialID": new.id}, service)
    assert (status, err["error_description"]) == (400, "Invalid parameter credentialID")
    # idempotent: the same deletion again answers the same; audited as a replay
    status, body = await csc.call("credentials/delete", {"credentialID": new.id}, deleter["access_token"])
    assert (status, body) == (204, None)
    audit = [r for r in dep.rssp_json("audit", "list", str(dep.directory), "--limit", "200")
             if r["target"] == new.id and r["action"] in ("credential.create", "credential.delete")]
    outcomes = sorted((r["action"], r["outcome"]) for r in audit)
    assert outcomes == [("credential.create", "ok"), ("credential.delete", "ok"), ("credential.delete", "replayed")]
    assert all(r["actor"] == audit[0]["actor"] and not r["actor"].startswith("operator:") for r in audit)


async def test_a_create_or_delete_token_cannot_sign_or_read(csc, http, dep):
    user = signer_of_own(dep, "erin")
    creator, out = await _create(csc, http, dep, user)
    new = made(out)
    deleter = await token_for(http, dep, user, authorization_details=deletion(new.id), pin=new.pin)
    service = await csc.token(user)
    sad = (await csc.call("credentials/authorize", {"credentialID": new.id, "numSignatures": 1,
                                                    "authData": [{"id": "PIN", "value": new.pin}]}, service))[1]["SAD"]
    sign = {"credentialID": new.id, "SAD": sad, "hashes": [b64(digest(b"x"))], "hashAlgorithmOID": SHA256,
            "signAlgo": ECDSA_SHA256}
    for token in (creator["access_token"], deleter["access_token"]):
        for method, body in (("signatures/signHash", sign), ("credentials/list", {}),
                             ("credentials/info", {"credentialID": new.id}),
                             ("credentials/authorize", {"credentialID": new.id, "numSignatures": 1,
                                                        "authData": [{"id": "PIN", "value": new.pin}]})):
            assert await csc.call(method, body, token) == WRONG_SCOPE, method
    assert await csc.call("credentials/delete", {"credentialID": new.id}, creator["access_token"]) == WRONG_SCOPE
    assert await csc.call("credentials/create", {}, deleter["access_token"]) == WRONG_SCOPE
    assert await csc.call("credentials/create", {}, service) == WRONG_SCOPE
    assert await csc.call("credentials/delete", {"credentialID": new.id}, service) == WRONG_SCOPE
    status, _ = await csc.call("signatures/signHash", sign, service)  # the SAD was not spent by the refusals
    assert status == 200


async def test_another_users_credential_cannot_be_deleted(csc, http, dep):
    user = signer_of_own(dep, "frank")
    _, out = await _create(csc, http, dep, user)
    own = made(out)
    bob = dep.creds["bob"]
    deleter = await token_for(http, dep, user, authorization_details=deletion(own.id), pin=own.pin)
    unknown = await csc.call("credentials/delete", {"credentialID": "no-such-credential"}, deleter["access_token"])
    theirs = await csc.call("credentials/delete", {"credentialID": bob.id}, deleter["access_token"])
    unknown_id = (400, {"error": "invalid_request", "error_description": "Invalid parameter credentialID"})
    assert theirs == unknown == unknown_id
    # nor can a deletion of someone else's credential be approved at the AS
    client = lifecycle_client(dep)
    _, challenge = pkce()
    query = await approve(dep, auth_params(client, challenge, authorization_details=deletion(bob.id)), user)
    assert query["error"] == "invalid_request" and query["error_description"] == "Invalid parameter credentialID"
    status, listed = await csc.call("credentials/list", {}, await csc.token("bob"))
    assert bob.id in listed["credentialIDs"]  # untouched


async def test_a_replayed_create_makes_one_credential(csc, http, dep):
    user = signer_of_own(dep, "grace")
    before = await _live(dep, user)
    granted = await token_for(http, dep, user, authorization_details=creation(EUDI_POLICY))
    body = {"credentialCreationRequest": {"certificatePolicy": EUDI_POLICY}}
    answers = await asyncio.gather(*(csc.call("credentials/create", body, granted["access_token"]) for _ in range(4)))
    answers.append(await csc.call("credentials/create", body, granted["access_token"]))
    ok = [b for s, b in answers if s == 201]
    busy = [b for s, b in answers if s != 201]
    assert ok and all(b == {"error": "invalid_request", "error_description": "A request with this token is in progress"}
                      for b in busy), answers
    assert len({b["credentialID"] for b in ok}) == 1
    assert [("PIN" in b) for b in ok].count(True) == 1  # the secrets are shown once
    assert len(await _live(dep, user)) == len(before) + 1
    assert answers[-1][0] == 201  # once finished, a replay gets the credential back


async def test_the_certificate_policy_selects_among_the_operators_cas_only(csc, http, dep):
    user = signer_of_own(dep, "heidi")
    granted = await token_for(http, dep, user, scope="credential-creation")  # no policy bound: the body's counts
    unmapped = {"credentialCreationRequest": {"certificatePolicy": "1.2.3.4"}}
    assert await csc.call("credentials/create", unmapped, granted["access_token"]) == (
        400, {"error": "invalid_request", "error_description": "Invalid parameter certificatePolicy"})
    # the refusal spent nothing: the same token still creates; the caller's level and key are not used
    body = {"credentialCreationRequest": {"certificatePolicy": EUDI_POLICY}, "level": 2, "key": "rsa-4096",
            "credentialInfo": True}
    status, out = await csc.call("credentials/create", body, granted["access_token"])
    assert status == 201 and out["SCAL"] == "1" and out["key"]["len"] == 256 and "otpauthURI" not in out
    # a policy bound at consent cannot be swapped at create
    bound = await token_for(http, dep, user, authorization_details=creation(EUDI_POLICY))
    other = {"credentialCreationRequest": {"certificatePolicy": "1.3.6.1.4.1.99999.1"}}
    assert (await csc.call("credentials/create", other, bound["access_token"]))[1]["error_description"] == \
        "Invalid parameter certificatePolicy"
    for bad in ({"credentialCreationRequest": "x"}, {"credentialCreationRequest": {"certificatePolicy": 5}},
                {"credentialCreationRequest": {"subjectData": "x"}}, {"certificates": "all"}):
        status, err = await csc.call("credentials/create", bad, bound["access_token"])
        assert status == 400 and err["error"] == "invalid_request", (bad, err)


async def test_the_2025_authorization_types_and_fields(csc, http, dep):
    user, cred = "alice", dep.creds["p256"]
    d1, d2 = digest(b"2025 one"), digest(b"2025 two")
    for hash_type in ("SDR", "dtbsr", "SoDr"):
        rar = [{"type": f"{URI}credential", "credentialID": cred.id, "numSignatures": 2, "acr_values": "x",
                "documentDigests": [{"hash": b64(d1), "label": "a", "hashType": hash_type, "circumstantialData": "c"},
                                    {"hash": b64(d2), "label": "b", "hashType": None}],
                "hashAlgorithmOID": SHA256, "signed_props": [{"attribute_name": "n", "attribute_value": "v"}],
                "circumstantialData": "x"}]
        body = await token_for(http, dep, user, authorization_details=json.dumps(rar), pin=cred.pin)
        assert body["scope"] == "credential" and body["authorization_details"][0]["credentialID"] == cred.id
    # a v2.2 credential entry without documentDigests (EUDI Kotlin's CredentialAuthorizationSubject)
    rar = [{"type": f"{URI}credential", "credentialID": cred.id, "numSignatures": 1}]
    body = await token_for(http, dep, user, authorization_details=json.dumps(rar), pin=cred.pin)
    status, out = await csc.call("signatures/signHash", {"credentialID": cred.id, "hashes": [b64(d1)],
                                                         "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256},
                                 body["access_token"])
    assert status == 200, out
    client = lifecycle_client(dep)
    for bad, why in (({"hashType": "XYZ"}, "hashType"), ({"hashType": 1}, "hashType")):
        rar = [{"type": f"{URI}credential", "credentialID": cred.id,
                "documentDigests": [{"hash": b64(d1), **bad}], "hashAlgorithmOID": SHA256}]
        _, challenge = pkce()
        params = auth_params(client, challenge, authorization_details=json.dumps(rar))
        async with http.get(f"{dep.base}/csc/v2/oauth2/authorize", params=params, allow_redirects=False) as resp:
            assert resp.status == 303 and why in resp.headers["Location"]
    # the legacy (pre-URI) name of the creation type is accepted too
    rar = creation(EUDI_POLICY, kind="credential_creation")
    assert (await token_for(http, dep, signer_of_own(dep, "ivan"), authorization_details=rar))["scope"] == \
        "credential-creation"


async def test_creation_stops_at_the_policys_number_of_credentials(csc, http, dep):
    """[credentials] max_per_user (10 by default) bounds what one signer can make through the API."""
    user = signer_of_own(dep, "judy")
    while len([c for c in await _live(dep, user) if c[1] != "deleted"]) < 9:
        dep.rssp("credential", "create", str(dep.directory), "--user", user, "--key", "ec-p256", "--pin", "123456")
    await _create(csc, http, dep, user)  # the tenth
    granted = await token_for(http, dep, user, authorization_details=creation(EUDI_POLICY))
    status, err = await csc.call("credentials/create", {}, granted["access_token"])
    assert (status, err["error_description"]) == (400, "The signer has the most credentials the service allows")
    assert len([c for c in await _live(dep, user) if c[1] != "deleted"]) == 10


async def test_the_creation_policy_is_checked_when_the_server_starts(dep):
    """The operator's [credentials] policy is checked when the server starts (rssp.credentials.policy)."""
    import pytest

    from rssp.config import ConfigError, load_config
    from rssp.credentials.policy import CreationPolicy

    base = load_config(dep.directory)
    for bad in ({"level": 3}, {"key": "dsa"}, {"certificate_policies": {"1.2.3": "nowhere"}},
                {"certificate_policies": {"not an oid": "local"}}, {"pin_digits": 4}, {"subject": "CN=x"},
                {"unknown": 1}):
        with pytest.raises(ConfigError):
            CreationPolicy.from_config(type(base)(**{**base.__dict__, "raw": {**base.raw, "credentials": bad}}))
    policy = CreationPolicy.from_config(base)
    assert policy.ca_for(EUDI_POLICY) == "local" and policy.ca_for(None) == base.default_ca
    assert policy.subject_for("a,O=Evil") == "CN=a\\,O=Evil"
