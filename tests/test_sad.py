"""The SAD rules of DESIGN §4: single use, bound to user, credential, count, hashes and time."""

from __future__ import annotations

import asyncio
import hashlib

import pytest
from sqlalchemy import update

from client import ECDSA_SHA256, SHA256_RSA, SHA384, digest
from rssp.store import open_store
from rssp.store.schema import credentials, sads

INVALID_SAD = "Invalid parameter SAD"
NOT_AUTHORIZED = "Hash is not authorized by the SAD."


def refusal(description: str, error: str = "invalid_request") -> tuple[int, dict[str, str]]:
    """The whole answer of a refused request: 400 and the CSC error object, nothing else."""
    return 400, {"error": error, "error_description": description}


async def test_a_used_sad_is_refused(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    d = digest(b"once")
    sad = await csc.sad(token, cred, hashes=[d])
    assert (await csc.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 200
    assert await csc.sign(token, cred, sad, [d], ECDSA_SHA256) == refusal(INVALID_SAD)


async def test_level1_sad_without_hashes_counts_signatures(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    sad = await csc.sad(token, cred, num=2)
    assert (await csc.sign(token, cred, sad, [digest(b"a")], ECDSA_SHA256))[0] == 200
    assert (await csc.sign(token, cred, sad, [digest(b"b")], ECDSA_SHA256))[0] == 200
    assert await csc.sign(token, cred, sad, [digest(b"c")], ECDSA_SHA256) == refusal(INVALID_SAD)


async def test_more_hashes_than_num_signatures_is_refused(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    sad = await csc.sad(token, cred, num=2)
    assert await csc.sign(token, cred, sad, [digest(b"1"), digest(b"2"), digest(b"3")], ECDSA_SHA256) == refusal(
        "The number of hashes exceeds the number of signatures authorized by the SAD")
    # nothing was spent by the refused batch: the two signatures are still there
    status, body = await csc.sign(token, cred, sad, [digest(b"1"), digest(b"2")], ECDSA_SHA256)
    assert status == 200, body


async def test_level2_hash_not_authorized_is_refused_and_spends_nothing(csc, dep):
    cred = dep.creds["l2_p256"]
    token = await csc.token()
    good, other = digest(b"authorized"), digest(b"not authorized")
    sad = await csc.sad(token, cred, num=1, hashes=[good])
    assert await csc.sign(token, cred, sad, [other], ECDSA_SHA256) == refusal(NOT_AUTHORIZED)
    # same bytes, named as another algorithm: not what was authorized (and no SHA-384 digest at all)
    assert await csc.sign(token, cred, sad, [good], ECDSA_SHA256, hash_oid=SHA384) == refusal(
        "Invalid parameter hashAlgorithmOID")
    status, body = await csc.sign(token, cred, sad, [good], ECDSA_SHA256)
    assert status == 200, body


async def test_batch_with_one_unauthorized_hash_spends_none(csc, dep):
    cred = dep.creds["l2_rsa"]
    token = await csc.token()
    a, b = digest(b"page a"), digest(b"page b")
    sad = await csc.sad(token, cred, num=2, hashes=[a, b])
    assert await csc.sign(token, cred, sad, [a, digest(b"intruder")], SHA256_RSA) == refusal(NOT_AUTHORIZED)
    status, body = await csc.sign(token, cred, sad, [a, b], SHA256_RSA)
    assert status == 200 and len(body["signatures"]) == 2


async def test_expired_sad_is_refused(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    d = digest(b"late")
    sad = await csc.sad(token, cred, hashes=[d])
    store = open_store(dep.db_url)
    try:  # let the SAD's time run out, as the clock would
        async with store.write() as conn:
            await conn.execute(update(sads).where(sads.c.sad_hash == hashlib.sha256(sad.encode()).hexdigest())
                               .values(expires_at=0))
    finally:
        await store.close()
    assert await csc.sign(token, cred, sad, [d], ECDSA_SHA256) == refusal("SAD expired")
    # an expired SAD cannot be extended either
    assert await csc.call("credentials/extendTransaction", {"credentialID": cred.id, "SAD": sad}, token) == refusal(
        "SAD expired")


async def test_sad_of_another_credential_or_user_is_refused(csc, dep):
    alice, bob = await csc.token("alice"), await csc.token("bob")
    d = digest(b"mine")
    alice_sad = await csc.sad(alice, dep.creds["p256"], hashes=[d])
    bob_sad = await csc.sad(bob, dep.creds["bob"], hashes=[d])
    # Alice's SAD on another of her credentials
    assert await csc.sign(alice, dep.creds["p384"], alice_sad, [digest(b"mine", "sha384")],
                          "1.2.840.10045.4.3.3", SHA384) == refusal(INVALID_SAD)
    # Bob's SAD with Bob's credential, presented by Alice: the credential looks unknown
    status, unknown = await csc.sign(alice, dep.creds["bob"], bob_sad, [d], ECDSA_SHA256)
    status2, really_unknown = await csc.sign(alice, dep.creds["bob"].__class__("nope", "x", "", 1, ""), bob_sad, [d],
                                            ECDSA_SHA256)
    assert (status, unknown) == (status2, really_unknown) == refusal("Invalid parameter credentialID")
    # Bob's SAD with Alice's credential
    assert await csc.sign(alice, dep.creds["p256"], bob_sad, [d], ECDSA_SHA256) == refusal(INVALID_SAD)
    # and Alice's own SAD still works afterwards
    assert (await csc.sign(alice, dep.creds["p256"], alice_sad, [d], ECDSA_SHA256))[0] == 200


async def test_num_signatures_above_multisign_is_refused(csc, dep):
    cred = dep.creds["p384"]  # multisign 10
    token = await csc.token()
    assert await csc.authorize(token, cred, num=11) == refusal("Numbers of signatures is too high")


@pytest.mark.parametrize("bound", [False, True], ids=["count-only", "hash-bound"])
async def test_concurrent_spend_of_one_signature_sad(csc, dep, bound):
    """20 requests race for one signature, across the two server processes: exactly one wins."""
    cred = dep.creds["rsa2048"]
    token = await csc.token()
    d = digest(b"contested")
    sad = await csc.sad(token, cred, num=1, hashes=[d] if bound else None)
    results = await asyncio.gather(*(csc.sign(token, cred, sad, [d], SHA256_RSA) for _ in range(20)))
    statuses = sorted(status for status, _ in results)
    assert statuses == [200] + [400] * 19, results
    assert [answer for answer in results if answer[0] == 400] == [refusal(INVALID_SAD)] * 19


@pytest.mark.parametrize("status,error", [("disabled", "The credential identified by credentialID is disabled"),
                                          ("deleted", "Invalid parameter credentialID")])
async def test_a_credential_changed_behind_the_cache_is_refused(csc, dep, status, error):
    """Both workers have the credential cached; a status change in the database still wins."""
    cred = dep.creds["bob"]
    token = await csc.token("bob")
    for i in range(4):  # reach (and so cache in) both worker processes
        d = digest(f"warm {status} {i}".encode())
        sad = await csc.sad(token, cred, hashes=[d])
        assert (await csc.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 200
    d = digest(f"after {status}".encode())
    sad = await csc.sad(token, cred, hashes=[d])
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            await conn.execute(update(credentials).where(credentials.c.id == cred.id).values(status=status))
        for _ in range(4):
            assert await csc.sign(token, cred, sad, [d], ECDSA_SHA256) == refusal(error)
    finally:
        async with store.write() as conn:
            await conn.execute(update(credentials).where(credentials.c.id == cred.id).values(status="enabled"))
        await store.close()
    assert (await csc.sign(token, cred, sad, [d], ECDSA_SHA256))[0] == 200  # nothing was spent meanwhile
