"""Lockout after repeated wrong factors, the audit trail, and secrets kept out of both."""

from __future__ import annotations

import asyncio
import json

from client import ECDSA_SHA256, OTP, SHA256, b64, digest


async def test_five_wrong_pins_lock_the_credential(csc, dep):
    cred = dep.creds["lock"]
    token = await csc.token()
    for _ in range(5):
        status, body = await csc.authorize(token, cred, pin="000000")
        assert (status, body["error"]) == (400, "invalid_authentication_data")
    status, body = await csc.authorize(token, cred)  # the right PIN, now too late
    assert (status, body["error_description"]) == (400, "Credential locked")
    # only a privileged operator clears it
    dep.rssp("credential", "unlock", str(dep.directory), cred.id)
    sad = await csc.sad(token, cred)
    assert (await csc.sign(token, cred, sad, [digest(b"after unlock")], ECDSA_SHA256))[0] == 200


async def test_a_good_factor_resets_the_failure_count(csc, dep):
    cred = dep.creds["p384"]
    token = await csc.token()
    for _ in range(4):
        assert (await csc.authorize(token, cred, pin="999999"))[0] == 400
    assert (await csc.authorize(token, cred))[0] == 200
    for _ in range(4):
        assert (await csc.authorize(token, cred, pin="999999"))[0] == 400
    assert (await csc.authorize(token, cred))[0] == 200


async def test_a_totp_code_is_accepted_once(csc, dep):
    cred = dep.creds["l2_rsa"]
    token = await csc.token()
    code = OTP.code(cred)
    body = {"credentialID": cred.id, "numSignatures": 1, "hashes": [b64(digest(b"t"))],
            "hashAlgorithmOID": SHA256,
            "authData": [{"id": "PIN", "value": cred.pin}, {"id": "OTP", "value": code}]}
    assert (await csc.call("credentials/authorize", body, token))[0] == 200
    status, answer = await csc.call("credentials/authorize", body, token)
    assert (status, answer["error"]) == (400, "invalid_authentication_data")


async def test_audit_records_logins_authorizations_signatures_and_failures(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    d = digest(b"audited document")
    sad = await csc.sad(token, cred, hashes=[d])
    assert (await csc.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 200
    assert (await csc.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 400  # replay: refused and audited
    await csc.authorize(token, cred, pin="000001")
    records = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "500")
    actions = {(r["action"], r["outcome"]) for r in records}
    assert {("auth.login", "ok"), ("credential.authorize", "ok"), ("signature.sign", "authorized"),
            ("credential.factors", "failed")} <= actions
    # the set-up's records, older than the newest 500 once other test files have used this deployment
    everything = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "1000000")
    assert {("credential.create", "ok"), ("user.add", "ok")} <= {(r["action"], r["outcome"]) for r in everything}
    signed = [r for r in records if r["action"] == "signature.sign" and d.hex() in r["detail"].get("hashes", [])]
    assert [r["outcome"] for r in signed] == ["authorized", "refused"]
    assert signed[0]["target"] == cred.id and signed[0]["clientIP"] == "127.0.0.1"
    assert signed[1]["detail"]["reason"] == "Invalid parameter SAD"
    await csc.authorize(token, cred)  # reset p256's failure count for other tests


async def test_no_secret_reaches_the_audit_trail_or_the_log(csc, dep):
    tokens = await csc.login("alice", remember=True)
    cred = dep.creds["l2_p256"]
    d = digest(b"secret hunt")
    status, body = await csc.authorize(tokens["access_token"], cred, hashes=[d])
    assert status == 200
    sad = body["SAD"]
    await csc.authorize(tokens["access_token"], dep.creds["p384"], pin="424242")
    await csc.authorize(tokens["access_token"], dep.creds["p384"])
    records = json.dumps(dep.rssp_json("audit", "list", str(dep.directory), "--limit", "1000"))
    log = dep.server_log()
    secrets = [tokens["access_token"], tokens["refresh_token"], sad, cred.pin, "424242", dep.passwords["alice"],
               cred.totp_seed]
    for secret in secrets:
        assert secret not in records
        assert secret not in log


async def test_a_malformed_request_is_logged_without_its_content(http, dep):
    """aiohttp refuses a request line over 8 KiB; its log line must not quote the URL's query."""
    marker = "leaked-code-" + "x" * 9000
    async with http.get(f"{dep.base}/csc/v2/oauth2/authorize?code={marker}") as resp:
        assert resp.status == 400
    deadline = asyncio.get_running_loop().time() + 5
    while "malformed HTTP request refused (400, LineTooLong)" not in dep.server_log():
        assert asyncio.get_running_loop().time() < deadline, dep.server_log()[-2000:]
        await asyncio.sleep(0.1)
    assert "leaked-code-" not in dep.server_log()
