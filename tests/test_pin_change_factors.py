"""credentials/changePIN for credentials with a factor set (#14), SQLite and PostgreSQL.

The current factors are checked as ``credentials/authorize`` checks them: an e-mailed code asked
for without hashes confirms the change (a wrong one is counted), an approval link cannot (it
is out of band), and the change ends an out-of-band approval still pending from the old PIN.
A credential whose expression needs a passkey cannot put its factors in a request body: the
change is refused with a clear text and nothing is counted. Uses the session's factor
deployment (SMTP relay on loopback), a user and credentials of its own.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from client import CSC, SHA256, b64, digest
from factors_helpers import code_in
from pin_change_helpers import unique
from sqlalchemy import select

from rssp.credentials.pin_change import UNREACHABLE
from rssp.store import open_store
from rssp.store.schema import credentials

NEW_PIN = "24680246"


async def _failed_attempts(fd, cred_id: str) -> int:
    store = open_store(fd.dep.db_url)
    try:
        async with store.read() as conn:
            found = (await conn.execute(select(credentials.c.failed_attempts)
                                        .where(credentials.c.id == cred_id))).scalar()
            assert found is not None, cred_id
            return int(found)
    finally:
        await store.close()


async def _code(fd, csc: CSC, token: str, cred_id: str, address: str, hashes: Sequence[bytes] = ()) -> str:
    before = fd.smtp.count(address)
    body: dict[str, Any] = {"credentialID": cred_id, "authObjectID": "EMAIL_OTP"}
    if hashes:
        body.update(hashes=[b64(h) for h in hashes], hashAlgorithmOID=SHA256)
    assert await csc.call("credentials/getChallenge", body, token) == (204, None)
    return code_in(await fd.smtp.next_mail(address, before))


async def _change(csc: CSC, token: str, cred_id: str, auth: list[dict]) -> tuple[int, dict | None]:
    return await csc.call("credentials/changePIN", {"credentialID": cred_id, "authData": auth, "newPIN": NEW_PIN,
                                                    "requestID": unique("factors")}, token)


async def _authorize(csc: CSC, token: str, cred_id: str, auth: list[dict], hashes: list[bytes]):
    return await csc.call("credentials/authorize", {
        "credentialID": cred_id, "numSignatures": len(hashes), "hashes": [b64(h) for h in hashes],
        "hashAlgorithmOID": SHA256, "authData": auth}, token)


async def test_an_emailed_code_confirms_the_change_and_ends_pending_approvals(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user, address = fd.user("pinmail"), "pinmail@example.jp"
    cred, _ = fd.credential("pinmail", user, "--email", address)
    token = await csc.token(user)
    pin = {"id": "PIN", "value": cred.pin}
    status, pending = await _authorize(csc, token, cred.id, [pin, {"id": "EMAIL_LINK"}],
                                       [digest(f"pending {time.time_ns()}".encode())])
    assert status == 202, pending  # an approval by link asked for with the old PIN

    assert await _change(csc, token, cred.id, [pin, {"id": "EMAIL_LINK"}]) == (
        400, {"error": "invalid_request", "error_description": "Invalid parameter authData"})
    code = await _code(fd, csc, token, cred.id, address)  # without hashes: confirms a change, signs nothing
    wrong = f"{(int(code) + 1) % 10 ** len(code):0{len(code)}d}"
    status, body = await _change(csc, token, cred.id, [pin, {"id": "EMAIL_OTP", "value": wrong}])
    assert (status, body["error"]) == (400, "invalid_authentication_data")
    assert await _failed_attempts(fd, cred.id) == 1  # counted like a wrong code at authorize
    assert await _change(csc, token, cred.id, [pin, {"id": "EMAIL_OTP", "value": code}]) == (204, None)
    assert await _failed_attempts(fd, cred.id) == 0

    status, body = await csc.call("credentials/authorizeCheck", {"handle": pending["handle"]}, token)
    assert (status, body["error_description"]) == (400, "Invalid parameter handle")  # revoked with the old PIN
    h = digest(f"after the change {time.time_ns()}".encode())
    code = await _code(fd, csc, token, cred.id, address, [h])
    status, body = await _authorize(csc, token, cred.id, [{"id": "PIN", "value": NEW_PIN},
                                                          {"id": "EMAIL_OTP", "value": code}], [h])
    assert status == 200 and "SAD" in body, body


async def test_a_credential_that_needs_a_passkey_is_refused_clearly(fdep, http):
    fd, csc = fdep, CSC(http, fdep.dep)
    user = fd.user("pinfido")
    cred, _ = fd.credential("pinfido", user, "--passkey")  # PIN AND FIDO: only the consent page collects a passkey
    token = await csc.token(user)
    status, body = await _change(csc, token, cred.id, [{"id": "PIN", "value": cred.pin}])
    assert (status, body) == (400, {"error": "invalid_request", "error_description": UNREACHABLE})
    assert await _failed_attempts(fd, cred.id) == 0
