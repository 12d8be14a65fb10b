"""signHash spent in one hop refuses what it refuses with its caller looked up first, and spends nothing.

A worker serves signHash in one database transaction (Bearer token checked where the SAD is
spent) once the credential is in its signing-key cache. Each test therefore first signs with
the credential over many fresh connections, so that both server processes have it cached,
and sends every later request over a fresh connection too.
"""

from __future__ import annotations

import time
from collections.abc import AsyncIterator

import pytest
import pytest_asyncio
from sqlalchemy import update

from client import CSC, ECDSA_SHA256, b64, digest
from signhash_helpers import fresh_client, signatures_of, warm
from rssp.auth.secrets import digest as secret_digest
from rssp.store import open_store
from rssp.store.schema import tokens


@pytest_asyncio.fixture
async def fresh(dep) -> AsyncIterator[CSC]:
    """A client whose every request opens a new connection (the kernel picks the worker)."""
    async with fresh_client(dep) as csc:
        yield csc


async def test_another_users_token_gets_unknown_credential_and_spends_nothing(fresh, dep):
    bob_cred = dep.creds["bob"]
    alice, bob = await fresh.token("alice"), await fresh.token("bob")
    await warm(fresh, bob, bob_cred)
    d = digest(f"bob's page {time.time()}".encode())
    bob_sad = await fresh.sad(bob, bob_cred, hashes=[d])
    for _ in range(4):  # Alice presents Bob's SAD for Bob's credential: it looks unknown to her
        status, body = await fresh.sign(alice, bob_cred, bob_sad, [d], ECDSA_SHA256)
        assert (status, body["error_description"]) == (400, "Invalid parameter credentialID")
    status, body = await fresh.sign(bob, bob_cred, bob_sad, [d], ECDSA_SHA256)
    assert status == 200, body  # the SAD was still whole
    assert signatures_of(dep, d) == ["authorized"]


@pytest.mark.parametrize("change,error", [({"revoked": True}, "expired_token"), ({"expires_at": 0}, "expired_token"),
                                          ({"kind": "refresh"}, "invalid_token")])
async def test_a_dead_token_is_refused_with_401_and_spends_nothing(fresh, dep, change, error):
    cred = dep.creds["p256"]
    token = await fresh.token()
    await warm(fresh, token, cred)
    d = digest(f"token {change} {time.time()}".encode())
    sad = await fresh.sad(token, cred, hashes=[d])
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            await conn.execute(update(tokens).where(tokens.c.token_hash == secret_digest(token)).values(**change))
    finally:
        await store.close()
    for _ in range(4):
        status, body = await fresh.sign(token, cred, sad, [d], ECDSA_SHA256)
        assert (status, body["error"]) == (401, error)
    status, body = await fresh.sign(await fresh.token(), cred, sad, [d], ECDSA_SHA256)
    assert status == 200, body


async def test_a_bad_token_wins_over_a_bad_body(fresh, dep):
    """401 before 400, as for every Bearer method: the body of a stranger's request is not judged."""
    cred = dep.creds["p256"]
    token = await fresh.token()
    await warm(fresh, token, cred)
    sad = await fresh.sad(token, cred)
    bad = {"credentialID": cred.id, "SAD": sad, "hashes": ["not base64!"], "signAlgo": ECDSA_SHA256}
    status, body = await fresh.call("signatures/signHash", bad, "no-such-token")
    assert (status, body["error"]) == (401, "invalid_token")
    status, body = await fresh.call("signatures/signHash", bad, token)
    assert (status, body["error"]) == (400, "invalid_request")
    good = {**bad, "hashes": [b64(digest(b"after the bad body"))]}
    status, body = await fresh.call("signatures/signHash", good, token)
    assert status == 200, body  # neither refusal spent the SAD


async def test_each_call_is_audited_once(fresh, dep):
    cred = dep.creds["p256"]
    token = await fresh.token()
    await warm(fresh, token, cred)
    d = digest(f"audited once {time.time()}".encode())
    sad = await fresh.sad(token, cred, hashes=[d])
    assert (await fresh.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 200
    assert (await fresh.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 400  # replay
    assert signatures_of(dep, d) == ["authorized", "refused"]
