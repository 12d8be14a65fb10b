"""credentials/changePIN at level 1, over HTTP, on SQLite and PostgreSQL: the PIN an operator chose
stops working once the signer changes it.

After a change the new PIN authorizes and signs; the old one is refused and counted toward the
lockout; every SAD, credential token and OAuth code given before is revoked. A replayed requestID
changes nothing; a wrong current PIN is counted and changes nothing; a weak new PIN is refused
before any factor is checked; someone else's credential looks unknown. The first-use policy
(``[security] require_pin_change_on_first_use``) keeps a new credential from signing until then.
Level 3 (the key re-wrapped in the HSM) is ``tests/test_pin_change_level3.py``.
"""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from sqlalchemy import delete, inspect, select, text

from client import ECDSA_SHA256, SHA256, b64
from oauth_helpers import FormBrowser, auth_params, credential_params, exchange, get_code, pkce, query_of
from pin_change_helpers import USER, audit_records, change_pin, changed, credential, digests, row, signer, unique
from rssp.store import migrate, open_store
from rssp.store.migrations import schema_version
from rssp.store.schema import credentials, users
from test_level3_flows import portal

INVALID_AUTH = "invalid_authentication_data"
CHANGE_FIRST = "The PIN must be changed with credentials/changePIN before the credential can sign"

__all__ = ["portal"]  # the OAuth client of the level-3 flows, reused


async def signs(csc, token, cred, label: str) -> int:
    """Authorize with the PIN the signer knows now, sign one hash: the status of the signature."""
    hashes = digests(label)
    status, body = await csc.authorize(token, cred, hashes=hashes)
    if status != 200:
        return status
    return (await csc.sign(token, cred, body["SAD"], hashes, ECDSA_SHA256))[0]


async def test_info_lists_change_pin(csc):
    status, body = await csc.call("info", {})
    assert status == 200 and "credentials/changePIN" in body["methods"]


async def test_the_old_pin_and_what_it_authorized_stop_working(http, csc, dep, portal):
    cred = credential(dep, "pat_l1")
    token = await csc.token(signer(dep))
    old_sad = await csc.sad(token, cred, num=2)
    h1, h2, h3 = digests("before", 3)
    verifier, challenge = pkce()  # a credential token, and a code not yet exchanged, both from the old PIN
    code = await get_code(dep, auth_params(portal, challenge, **credential_params(cred, [h1, h2])), cred, USER)
    status, grant = await exchange(http, dep, portal, code, verifier)
    assert status == 200, grant
    verifier2, challenge2 = pkce()
    pending = await get_code(dep, auth_params(portal, challenge2, **credential_params(cred, [h3])), cred, USER)

    status, body = await change_pin(csc, token, cred, "90817263")
    assert (status, body) == (204, None)
    new = changed(dep, "pat_l1", "90817263")

    status, body = await csc.sign(token, cred, old_sad, [h1], ECDSA_SHA256)
    assert (status, body["error_description"]) == (400, "Invalid parameter SAD")
    status, body = await csc.call("credentials/extendTransaction", {"credentialID": cred.id, "SAD": old_sad}, token)
    assert (status, body["error_description"]) == (400, "Invalid parameter SAD")  # nor extended into a new one
    sign = {"credentialID": cred.id, "hashes": [b64(h1)], "hashAlgorithmOID": SHA256,
            "signAlgo": ECDSA_SHA256}
    status, body = await csc.call("signatures/signHash", sign, grant["access_token"])
    assert (status, body["error"]) == (401, "expired_token"), body
    status, body = await exchange(http, dep, portal, pending, verifier2)
    assert status == 400 and body["error"] == "invalid_grant", body

    status, body = await csc.authorize(token, cred)  # the old PIN: refused and counted
    assert (status, body["error"]) == (400, INVALID_AUTH)
    assert (await row(dep, cred)).failed_attempts == 1
    assert await signs(csc, token, new, "with the new PIN") == 200
    assert (await row(dep, cred)).failed_attempts == 0

    records = [r for r in await audit_records(dep, cred.id) if r.action == "credential.changePIN"]
    assert [r.outcome for r in records] == ["ok"]
    detail = json.loads(records[0].detail)
    assert detail["revokedSADs"] >= 1 and detail["revokedTokenGrants"] == 1 and detail["revokedCodes"] == 1
    text = " ".join(str(tuple(r)) for r in await audit_records(dep, cred.id))
    assert "90817263" not in text and "123456" not in text  # no PIN in the trail


async def test_a_replayed_request_changes_nothing(csc, dep):
    cred, other = credential(dep, "pat_replay"), credential(dep, "pat_replay2")
    token = await csc.token(signer(dep))
    request_id = unique("replay")
    assert (await change_pin(csc, token, cred, "31415926", request_id))[0] == 204
    for new_pin in ("31415926", "27182818"):  # the same request again, or the same requestID with another PIN
        assert await change_pin(csc, token, cred, new_pin, request_id) == (204, None)
    assert (await row(dep, cred)).failed_attempts == 0  # a replay checks no factor
    new = changed(dep, "pat_replay", "31415926")
    status, _ = await csc.authorize(token, cred, pin="27182818")
    assert status == 400  # the replay did not set its PIN
    assert await signs(csc, token, new, "after the replays") == 200
    outcomes = [r.outcome for r in await audit_records(dep, cred.id) if r.action == "credential.changePIN"]
    assert outcomes == ["ok", "replayed", "replayed"]
    status, body = await change_pin(csc, token, other, "16180339", request_id)  # that requestID, another credential
    assert (status, body["error_description"]) == (400, "requestID was already used for another request")
    assert await signs(csc, token, other, "other credential unchanged") == 200


async def test_refused_changes_change_nothing(csc, dep):
    cred = credential(dep, "pat_refused")
    token = await csc.token(signer(dep))
    status, body = await change_pin(csc, token, cred, "86420864", pin="999999")  # a wrong current PIN: counted
    assert (status, body["error"]) == (400, INVALID_AUTH)
    assert (await row(dep, cred)).failed_attempts == 1
    weak = {"12": "the PIN must be 4 to 32 digits", "12ab34": "the PIN must be 4 to 32 digits",
            "1" * 33: "the PIN must be 4 to 32 digits", "１２３４５６": "the PIN must be 4 to 32 digits"}
    for new_pin, problem in weak.items():  # refused before the factors: nothing counted
        status, body = await change_pin(csc, token, cred, new_pin, pin="000000")
        assert (status, body["error_description"]) == (400, f"Invalid parameter newPIN: {problem}"), new_pin
    status, body = await change_pin(csc, token, cred, cred.pin)
    assert (status, body["error_description"]) == (400, "newPIN must differ from the current PIN")
    alice = await csc.token("alice")  # someone else's credential looks unknown
    status, body = await change_pin(csc, alice, cred, "86420864")
    assert (status, body["error_description"]) == (400, "Invalid parameter credentialID")
    assert (await row(dep, cred)).failed_attempts == 1
    assert await signs(csc, token, cred, "the PIN is unchanged") == 200
    assert [r for r in await audit_records(dep, cred.id) if r.action == "credential.changePIN"] == []


async def test_wrong_current_pins_lock_the_credential_like_authorize(csc, dep):
    cred = credential(dep, "pat_lock")
    token = await csc.token(signer(dep))
    for _ in range(5):
        status, body = await change_pin(csc, token, cred, "13579135", pin="999999")
        assert (status, body["error"]) == (400, INVALID_AUTH)
    status, body = await change_pin(csc, token, cred, "13579135")  # the right PIN, too late
    assert (status, body["error_description"]) == (400, "Credential locked")
    assert (await row(dep, cred)).locked


async def test_of_two_concurrent_changes_one_applies(csc, dep):
    cred = credential(dep, "pat_race")
    token = await csc.token(signer(dep))
    pins = ("11112222", "33334444")
    answers = await asyncio.gather(*(change_pin(csc, token, cred, p) for p in pins))
    assert sorted(status for status, _ in answers) == [204, 400], answers
    won, lost = (pins[0], pins[1]) if answers[0][0] == 204 else (pins[1], pins[0])
    loser = next(body for status, body in answers if status == 400)
    assert loser["error_description"] in ("The PIN was changed by another request meanwhile",
                                          "The authentication data is invalid"), loser
    status, _ = await csc.authorize(token, cred, pin=lost)
    assert status == 400
    assert await signs(csc, token, changed(dep, "pat_race", won), "the winner's PIN") == 200


async def test_first_use_policy_signs_nothing_until_the_signer_changes_the_pin(http, csc, dep, portal):
    directory = str(dep.directory)
    dep.rssp("config", "set", directory, "security.require_pin_change_on_first_use", "true")
    try:
        cred = credential(dep, "pat_first_use", pin="24681357")
    finally:
        dep.rssp("config", "set", directory, "security.require_pin_change_on_first_use", "false")
    token = await csc.token(signer(dep))
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200 and info["pinChangeRequired"] is True
    status, body = await csc.authorize(token, cred)  # the operator's PIN authorizes nothing
    assert (status, body["error_description"]) == (400, CHANGE_FIRST)
    assert (await row(dep, cred)).failed_attempts == 0
    _verifier, challenge = pkce()
    async with FormBrowser(dep) as browser:  # nor through the OAuth consent page
        assert (await browser.authorize(auth_params(portal, challenge, **credential_params(cred, digests("o"))))
                ).status == 200
        page = await browser.login(USER)
    assert page.status in (302, 303), page.text
    assert query_of(page.location or "")["error_description"] == CHANGE_FIRST

    assert (await change_pin(csc, token, cred, "75316420"))[0] == 204
    new = changed(dep, "pat_first_use", "75316420")
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200 and "pinChangeRequired" not in info
    assert await signs(csc, token, new, "after the first change") == 200
    status, info = await csc.call("credentials/info", {"credentialID": credential(dep, "pat_l1b").id}, token)
    assert status == 200 and "pinChangeRequired" not in info  # the policy is off again: not marked


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_database(request, tmp_path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path}/old.db"
    return request.getfixturevalue("pg_cluster").create_database()


async def test_migration_12_brings_an_older_database_the_pin_change_state(empty_database):
    store = open_store(empty_database)
    try:
        await migrate(store)

        def downgrade(conn):  # a version-11 database with a credential in it
            now = time.time()
            conn.execute(users.insert().values(id="u1", username="old", password_hash="x", status="active",
                                               created_at=now))
            conn.execute(credentials.insert().values(
                id="c1", user_id="u1", level=1, key_kind="ec", key_len=256, hsm_key_id="k", public_key=b"p",
                chain="[]", status="enabled", multisign=1, created_at=now, updated_at=now))
            conn.execute(text("ALTER TABLE credentials DROP COLUMN pin_change_required"))
            conn.execute(text("DROP TABLE pin_change_requests"))
            conn.execute(delete(schema_version).where(schema_version.c.version >= 12))

        await store.transaction(downgrade)
        version = await migrate(store)
        assert version >= 12
        assert "pin_change_requests" in await store.query(lambda conn: set(inspect(conn).get_table_names()))
        flag = await store.query(lambda conn: conn.execute(select(credentials.c.pin_change_required)).scalar())
        assert flag is False  # a credential from before is not marked
        assert await migrate(store) == version  # idempotent
    finally:
        await store.close()
