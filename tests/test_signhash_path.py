"""signHash's security branches: a signature that does not verify never leaves the SAM, and a
token that may not sign with the credential is refused in the spend's transaction, spending nothing.

Each refusal of a token is checked on a warm worker (the credential in its signing-key cache, so
the token is checked only where the SAD is spent: rssp.sam.sad.check_caller) over fresh
connections (tests/signhash_helpers.py). The verification failure is real: a credential's HSM key
ID is pointed, in the database, at another credential's key, the key mix-up the SAM's check
exists for (rssp.sam.verify).
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import aiohttp
import pytest_asyncio
from sqlalchemy import select, update

from client import CSC, ECDSA_SHA256, SHA256, b64, digest
from oauth_helpers import add_client, credential_token
from rssp.store import open_store
from rssp.store.schema import credentials
from signhash_helpers import fresh_client, signatures_of, warm

NOT_FOR_THIS_METHOD = (401, "invalid_token", "The access token is not valid for this method")
UNKNOWN_CREDENTIAL = (400, "invalid_request", "Invalid parameter credentialID")


@pytest_asyncio.fixture
async def fresh(dep) -> AsyncIterator[CSC]:
    async with fresh_client(dep) as csc:
        yield csc


def _error(status: int, body: dict) -> tuple[int, str, str]:
    return status, body["error"], body["error_description"]


async def _point_key_at(dep, cred_id: str, other_cred_id: str) -> None:
    """Make ``cred_id`` sign with ``other_cred_id``'s HSM key, as a database edit would."""
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            other_key = (await conn.execute(select(credentials.c.hsm_key_id)
                                            .where(credentials.c.id == other_cred_id))).scalar()
            await conn.execute(update(credentials).where(credentials.c.id == cred_id).values(hsm_key_id=other_key))
    finally:
        await store.close()


async def test_a_signature_that_does_not_verify_is_never_returned(csc, dep):
    cred = dep.add_credential(f"mixup_{time.time_ns()}", "alice", "ec-p256", multisign=2)  # no worker has it cached
    await _point_key_at(dep, cred.id, dep.creds["bob"].id)
    token = await csc.token()
    d = digest(f"mixed-up key {time.time()}".encode())
    sad = await csc.sad(token, cred, hashes=[d])
    status, body = await csc.sign(token, cred, sad, [d], ECDSA_SHA256)
    assert _error(status, body) == (500, "server_error", "The signature could not be verified")
    assert "signatures" not in body
    assert signatures_of(dep, d) == ["authorized", "verify_failed"]  # spent, signed, refused by the check
    status, body = await csc.sign(token, cred, sad, [d], ECDSA_SHA256)
    assert status == 400 and "signatures" not in body  # the spent hash is not signed again


async def test_a_token_of_another_scope_is_refused_and_spends_nothing(fresh, dep, http):
    """A management client's token (scope ``manage``) is a live access token; signHash is not its method."""
    cred = dep.creds["p256"]
    token = await fresh.token()
    await warm(fresh, token, cred)
    client_id, secret = dep.manage_clients["local"]
    auth = {"Authorization": aiohttp.encode_basic_auth(client_id, secret)}
    async with http.post(f"{dep.base}/csc/v2/manages/login", json={}, headers=auth) as resp:
        assert resp.status == 200, await resp.text()
        manage_token = (await resp.json())["access_token"]
    d = digest(f"manage scope {time.time()}".encode())
    sad = await fresh.sad(token, cred, hashes=[d])
    for _ in range(4):
        assert _error(*await fresh.sign(manage_token, cred, sad, [d], ECDSA_SHA256)) == NOT_FOR_THIS_METHOD
    status, body = await fresh.sign(token, cred, sad, [d], ECDSA_SHA256)
    assert status == 200, body  # the SAD was still whole
    assert signatures_of(dep, d) == ["authorized"]  # a refused token is not a signing attempt


async def test_another_credentials_token_is_refused_and_spends_nothing(fresh, dep, http):
    """A credential-scoped OAuth token signs only for its own credential, neither with another
    credential's SAD nor as its own SAD; its grant and the other SAD stay whole."""
    cred, other = dep.creds["p256"], dep.creds["p384"]
    token = await fresh.token()
    await warm(fresh, token, cred)
    client = add_client(dep, f"Portal {time.time_ns()}", "https://sa.example/cb")
    mine = digest(f"the token's own hash {time.time()}".encode())
    cred_token = (await credential_token(http, dep, client, other, [mine]))["access_token"]
    d = digest(f"another credential's hash {time.time()}".encode())
    sad = await fresh.sad(token, cred, hashes=[d])
    for _ in range(4):
        assert _error(*await fresh.sign(cred_token, cred, sad, [d], ECDSA_SHA256)) == UNKNOWN_CREDENTIAL
    body = {"credentialID": cred.id, "hashes": [b64(mine)], "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256}
    assert _error(*await fresh.call("signatures/signHash", body, cred_token)) == UNKNOWN_CREDENTIAL
    status, out = await fresh.sign(token, cred, sad, [d], ECDSA_SHA256)
    assert status == 200, out  # the other credential's SAD was still whole
    body = {**body, "credentialID": other.id}
    status, out = await fresh.call("signatures/signHash", body, cred_token)
    assert status == 200, out  # and so was the token's own grant
    assert signatures_of(dep, d) == ["authorized"] and signatures_of(dep, mine) == ["authorized"]
