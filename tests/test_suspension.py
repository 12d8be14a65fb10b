"""Suspension (JT2A Part II 3.3.1/3.3.2): by the signer through the API, by an operator through the CLI.

A suspended credential shows ``key.status: "disabled"`` and signs nothing — not by
``credentials/authorize``, nor by signHash or signDoc with a SAD issued before the suspension,
in either server process, whatever their signing-key caches hold. Every request is
replay-proof: the same ``requestID`` again changes nothing.

The module enrolls its own signer, ``sue``, so that suspending her credentials disturbs no
other test of the session's deployment.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest
import pytest_asyncio
from client import CSC, ECDSA_SHA256, OTP, SHA256, b64, digest
from deployment import Cred

DISABLED = "The credential identified by credentialID is disabled"
WARM_CALLS = 8  # fresh connections before the suspension: both workers then have the key cached
AFTER_CALLS = 16  # fresh connections after it: the kernel spreads them over both workers


@pytest.fixture(scope="module")
def sue(dep) -> dict[str, Cred]:
    if "sue" not in dep.passwords:
        dep.add_user("sue", "sue-password")
        for name, level in (("sue1", 1), ("sue2", 1), ("sue3", 1), ("sue_l2", 2)):
            dep.add_credential(name, "sue", "ec-p256", level=level, totp=level == 2, multisign=50)
    return {name: dep.creds[name] for name in ("sue1", "sue2", "sue3", "sue_l2")}


@pytest_asyncio.fixture
async def fresh(dep) -> AsyncIterator[CSC]:
    """A client whose every request opens a new connection (the kernel picks the worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield CSC(session, dep)


def factors(cred: Cred, pin: str | None = None) -> list[dict[str, str]]:
    out = [{"id": "PIN", "value": pin or cred.pin}]
    if cred.totp_seed:
        out.append({"id": "OTP", "value": OTP.code(cred)})
    return out


async def change(csc: CSC, token: str, action: str, cred: Cred, request_id: str, **extra) -> tuple[int, dict]:
    body = {"credentialID": cred.id, "authData": factors(cred), "requestID": request_id, **extra}
    return await csc.call(f"credentials/{action}", body, token)


async def key_status(csc: CSC, token: str, cred: Cred) -> str:
    status, body = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200, body
    return body["key"]["status"]


async def signs(csc: CSC, token: str, cred: Cred, sad: str, label: str) -> tuple[int, dict]:
    return await csc.sign(token, cred, sad, [digest(f"{label} {time.time()}".encode())], ECDSA_SHA256)


def unique(label: str) -> str:
    return f"{label}-{time.time_ns()}"


def audit(dep, action: str, target: str) -> list[dict]:
    records = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "2000")
    return [r for r in records if r["action"] == action and r["target"] == target]


async def test_info_lists_the_suspension_methods(csc):
    status, body = await csc.call("info", {})
    assert status == 200 and {"credentials/suspend", "credentials/resume"} <= set(body["methods"])


async def test_signer_suspends_and_nothing_signs_in_any_worker(fresh, dep, sue):
    cred = sue["sue1"]
    token = await fresh.token("sue")
    sad = await fresh.sad(token, cred, num=WARM_CALLS + AFTER_CALLS)
    for i in range(WARM_CALLS):
        assert (await signs(fresh, token, cred, sad, f"warm {i}"))[0] == 200
    doc_sad = await fresh.sad(token, cred, num=2)
    assert (await sign_doc(fresh, token, cred, doc_sad, "before"))[0] == 200

    status, body = await change(fresh, token, "suspend", cred, unique("s"), reason="phone lost")
    assert (status, body) == (200, {"credentialID": cred.id, "key": {"status": "disabled"}})

    assert await key_status(fresh, token, cred) == "disabled"
    for i in range(AFTER_CALLS):  # the SAD from before: refused in whichever worker answers
        status, body = await signs(fresh, token, cred, sad, f"after {i}")
        assert (status, body["error_description"]) == (400, DISABLED), body
    status, body = await sign_doc(fresh, token, cred, doc_sad, "after")
    assert (status, body["error_description"]) == (400, DISABLED), body
    status, body = await fresh.authorize(token, cred)
    assert (status, body["error_description"]) == (400, DISABLED), body
    assert [r["detail"]["by"] for r in audit(dep, "credential.suspend", cred.id)] == ["signer"]

    status, body = await change(fresh, token, "resume", cred, unique("r"))
    assert (status, body) == (200, {"credentialID": cred.id, "key": {"status": "enabled"}})
    assert await key_status(fresh, token, cred) == "enabled"
    status, body = await signs(fresh, token, cred, sad, "old SAD")
    assert (status, body["error_description"]) == (400, "Invalid parameter SAD")  # ended by the suspension
    assert (await signs(fresh, token, cred, await fresh.sad(token, cred), "new SAD"))[0] == 200


async def sign_doc(csc: CSC, token: str, cred: Cred, sad: str, label: str) -> tuple[int, dict]:
    entry = {"hashes": [b64(digest(f"document {label} {time.time()}".encode()))], "hashAlgorithmOID": SHA256,
             "signature_format": "C", "conformance_level": "Ades-B-B", "signed_envelope_property": "Detached",
             "signAlgo": ECDSA_SHA256}
    return await csc.call("signatures/signDoc", {"credentialID": cred.id, "SAD": sad, "documentDigests": [entry]},
                          token)


async def test_a_replayed_suspension_request_changes_nothing(csc, dep, sue):
    cred = sue["sue2"]
    token = await csc.token("sue")
    suspend_id, resume_id = unique("suspend"), unique("resume")
    first = await change(csc, token, "suspend", cred, suspend_id)
    assert first[0] == 200
    assert (await change(csc, token, "resume", cred, resume_id))[0] == 200
    for _ in range(2):  # the suspension sent again: the first answer back, the credential stays enabled
        assert await change(csc, token, "suspend", cred, suspend_id) == first
        assert await key_status(csc, token, cred) == "enabled"
    assert (await signs(csc, token, cred, await csc.sad(token, cred), "after the replays"))[0] == 200
    outcomes = [r["outcome"] for r in audit(dep, "credential.suspend", cred.id)]
    assert outcomes.count("ok") == 1 and outcomes.count("replayed") == 2
    status, body = await change(csc, token, "resume", cred, suspend_id)  # that requestID, another request
    assert (status, body["error_description"]) == (400, "requestID was already used for another request")


async def test_the_signer_is_confirmed_by_the_credentials_factors(csc, dep, sue):
    cred, l2 = sue["sue3"], sue["sue_l2"]
    token = await csc.token("sue")
    body = {"credentialID": cred.id, "authData": factors(cred, pin="999999"), "requestID": unique("w")}
    status, answer = await csc.call("credentials/suspend", body, token)
    assert (status, answer["error"]) == (400, "invalid_authentication_data")
    body = {"credentialID": l2.id, "authData": [{"id": "PIN", "value": l2.pin}], "requestID": unique("l2")}
    status, answer = await csc.call("credentials/suspend", body, token)  # level 2: the OTP too
    assert (status, answer["error_description"]) == (400, "Missing (or invalid type) array parameter authData")
    assert await key_status(csc, token, cred) == "enabled" and await key_status(csc, token, l2) == "enabled"
    assert (await change(csc, token, "suspend", l2, unique("l2")))[0] == 200
    assert (await change(csc, token, "resume", l2, unique("l2")))[0] == 200
    alice = await csc.token("alice")  # someone else's credential looks unknown
    status, answer = await change(csc, alice, "suspend", cred, unique("x"))
    assert (status, answer["error_description"]) == (400, "Invalid parameter credentialID")
    assert (await csc.authorize(token, cred))[0] == 200  # resets the wrong PIN's count


async def test_an_operator_suspends_and_only_an_operator_resumes(csc, dep, sue):
    cred = sue["sue3"]
    token = await csc.token("sue")
    request_id = unique("op")
    out = dep.rssp_json("credential", "suspend", str(dep.directory), cred.id, "--reason", "fraud suspected",
                        "--request-id", request_id)
    assert out["key"] == {"status": "disabled"} and out["replayed"] is False
    assert await key_status(csc, token, cred) == "disabled"
    status, body = await csc.authorize(token, cred)
    assert (status, body["error_description"]) == (400, DISABLED)
    status, body = await change(csc, token, "resume", cred, unique("sr"))
    assert (status, body["error_description"]) == (
        400, "The credential was suspended by an operator; only an operator can resume it")
    dep.rssp("credential", "resume", str(dep.directory), cred.id)
    assert await key_status(csc, token, cred) == "enabled"
    again = dep.rssp_json("credential", "suspend", str(dep.directory), cred.id, "--reason", "fraud suspected",
                          "--request-id", request_id)  # the operator's request replayed
    assert again["replayed"] is True and await key_status(csc, token, cred) == "enabled"
    done = dep.rssp("credential", "suspend", str(dep.directory), cred.id, "--reason", "x", operator=False, check=False)
    assert done.returncode == 2 and "needs an authenticated operator" in done.stderr
    assert await key_status(csc, token, cred) == "enabled"
    suspensions = audit(dep, "credential.suspend", cred.id)
    assert [(r["actor"], r["outcome"]) for r in suspensions] == [("operator:admin", "ok"),
                                                                  ("operator:admin", "replayed")]
    assert suspensions[0]["detail"]["reason"] == "fraud suspected"
