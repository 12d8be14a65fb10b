"""``credentials/extendTransaction`` never widens what the signer authorized (#20, finding 1).

The signer approved hash A with PIN and OTP (level 2); extending the SAD with hash B must not
let B be signed, neither with a SAD from ``credentials/authorize`` nor with a level-2 OAuth
credential token sent as the SAD. Extending keeps the unspent part only, and a transaction has
an absolute lifetime that extending cannot pass.
"""

from __future__ import annotations

import hashlib
import time

from sqlalchemy import select, update

from client import ECDSA_SHA256, SHA256, SHA384, b64, digest
from oauth_helpers import add_client, auth_params, credential_params, exchange, get_code, pkce
from rssp.store import open_store
from rssp.store.schema import sads

REDIRECT = "https://sa.example/extend-callback"


async def extend(csc, token, cred, sad, hashes=None, hash_oid=SHA256):
    body = {"credentialID": cred.id, "SAD": sad}
    if hashes is not None:
        body["hashes"] = [b64(h) for h in hashes]
        body["hashAlgorithmOID"] = hash_oid
    return await csc.call("credentials/extendTransaction", body, token)


async def sad_row(dep, sad: str):
    store = open_store(dep.db_url)
    try:
        async with store.read() as conn:
            sad_hash = hashlib.sha256(sad.encode()).hexdigest()
            return (await conn.execute(select(sads).where(sads.c.sad_hash == sad_hash))).first()
    finally:
        await store.close()


async def test_level2_extend_cannot_rebind_the_sad_to_another_hash(csc, dep):
    cred = dep.creds["l2_p256"]
    token = await csc.token()
    approved, other = digest(b"approved by the signer"), digest(b"never seen by the signer")
    sad = await csc.sad(token, cred, num=1, hashes=[approved])
    status, body = await extend(csc, token, cred, sad, [other])
    assert (status, body["error_description"]) == (400, "Hash is not authorized by the SAD.")
    status, body = await extend(csc, token, cred, sad, [approved], hash_oid=SHA384)
    assert status == 400  # the same bytes under another algorithm are not what was approved
    # the refused extensions consumed nothing: the SAD still signs what the signer approved, and only that
    assert (await csc.sign(token, cred, sad, [other], ECDSA_SHA256))[0] == 400
    status, body = await csc.sign(token, cred, sad, [approved], ECDSA_SHA256)
    assert status == 200, body


async def test_extend_carries_only_the_unspent_hashes(csc, dep):
    cred = dep.creds["l2_p256"]
    token = await csc.token()
    a, b, c = digest(b"page 1"), digest(b"page 2"), digest(b"page 3")
    sad = await csc.sad(token, cred, num=3, hashes=[a, b, c])
    assert (await csc.sign(token, cred, sad, [a], ECDSA_SHA256))[0] == 200
    status, body = await extend(csc, token, cred, sad, [a, b])  # a is spent: not carried
    assert (status, body["error_description"]) == (400, "Hash is not authorized by the SAD.")
    status, body = await extend(csc, token, cred, sad, [b])  # narrowing to an unspent hash is allowed
    assert status == 200, body
    new_sad = body["SAD"]
    assert (await csc.sign(token, cred, sad, [c], ECDSA_SHA256))[0] == 400  # the old SAD is consumed
    assert (await csc.sign(token, cred, new_sad, [c], ECDSA_SHA256))[0] == 400  # c was not carried
    assert (await csc.sign(token, cred, new_sad, [b], ECDSA_SHA256))[0] == 200
    assert (await csc.sign(token, cred, new_sad, [b], ECDSA_SHA256))[0] == 400  # spent once


async def test_extend_without_hashes_keeps_the_unspent_ones_and_no_more_signatures(csc, dep):
    cred = dep.creds["l2_p256"]
    token = await csc.token()
    a, b = digest(b"one"), digest(b"two")
    sad = await csc.sad(token, cred, num=2, hashes=[a, b])
    assert (await csc.sign(token, cred, sad, [a], ECDSA_SHA256))[0] == 200
    status, body = await extend(csc, token, cred, sad)
    assert status == 200, body
    row = await sad_row(dep, body["SAD"])
    assert row.remaining == 1 and row.bound
    assert (await csc.sign(token, cred, body["SAD"], [a], ECDSA_SHA256))[0] == 400
    assert (await csc.sign(token, cred, body["SAD"], [b], ECDSA_SHA256))[0] == 200


async def test_level1_extend_may_narrow_but_never_adds_signatures(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    sad = await csc.sad(token, cred, num=2)
    hashes = [digest(b"x"), digest(b"y"), digest(b"z")]
    status, body = await extend(csc, token, cred, sad, hashes)
    assert (status, body["error_description"]) == (400, "Numbers of signatures is too high")
    status, body = await extend(csc, token, cred, sad, hashes[:1])
    assert status == 200, body
    assert (await csc.sign(token, cred, body["SAD"], hashes[1:2], ECDSA_SHA256))[0] == 400  # now bound to x
    assert (await csc.sign(token, cred, body["SAD"], hashes[:1], ECDSA_SHA256))[0] == 200


async def test_a_transaction_cannot_be_extended_past_its_absolute_lifetime(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    d = digest(b"long transaction")
    sad = await csc.sad(token, cred, hashes=[d])
    first = await sad_row(dep, sad)
    assert first.not_after - first.created_at >= first.expires_at - first.created_at  # the transaction outlives one SAD
    status, body = await extend(csc, token, cred, sad)
    assert status == 200, body
    row = await sad_row(dep, body["SAD"])
    assert row.not_after == first.not_after and row.expires_at <= row.not_after  # carried, not renewed
    assert 0 < body["expiresIn"] <= 300
    store = open_store(dep.db_url)
    try:  # the transaction's end comes, while this SAD itself would still be live
        async with store.write() as conn:
            await conn.execute(update(sads).where(sads.c.sad_hash == row.sad_hash)
                               .values(not_after=time.time() - 1))
    finally:
        await store.close()
    status, body = await extend(csc, token, cred, body["SAD"])
    assert status == 400, body


async def test_a_credential_token_cannot_be_extended_into_a_sad(http, csc, dep):
    """The same hole through a level-2 OAuth credential token sent as the SAD: no SAD is made from a token.

    A SAD extended from the token would be re-bindable and would outlive the token's revocation.
    """
    clients = dep.__dict__.setdefault("_extend_clients", {})
    if not clients:
        clients["sa"] = add_client(dep, "Extend app", REDIRECT)
    client, cred = clients["sa"], dep.creds["l2_p256"]
    approved, other = digest(b"token-approved"), digest(b"token-other")
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(client, challenge, **credential_params(cred, [approved])), cred)
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200, body
    cred_token = body["access_token"]
    service = await csc.token()
    for hashes in ([other], [approved], None):
        status, body = await extend(csc, service, cred, cred_token, hashes)
        assert (status, body["error_description"]) == (400, "Invalid parameter SAD")
    sign = {"credentialID": cred.id, "hashes": [b64(other)], "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256}
    assert (await csc.call("signatures/signHash", sign, cred_token))[0] == 400
    sign["hashes"] = [b64(approved)]
    status, body = await csc.call("signatures/signHash", sign, cred_token)
    assert status == 200, body
