"""Concurrent guesses cannot get past the lockout (#20, finding 4).

An attempt is counted before its factors are checked, so fifty wrong PINs sent at once, spread
over both worker processes, leave the credential locked after five checks, and the right PIN
sent with them or after them is refused.
"""

from __future__ import annotations

import asyncio
import secrets

from client import ECDSA_SHA256, digest


async def test_fifty_concurrent_wrong_pins_lock_the_credential(csc, dep):
    cred = dep.add_credential(f"race-{secrets.token_hex(4)}", "alice", "ec-p256")
    tokens = [await csc.token() for _ in range(4)]  # several connections' worth of callers
    answers = await asyncio.gather(*(csc.authorize(tokens[i % 4], cred, pin=f"9{i:05d}") for i in range(50)))
    wrong = [(s, b["error"], b["error_description"]) for s, b in answers]
    checked = [w for w in wrong if w[1] == "invalid_authentication_data"]
    assert 1 <= len(checked) <= 5, wrong
    # the others found every attempt taken (429: try again) or, once five failed, the credential locked
    assert all(w[:2] == (429, "temporarily_unavailable") or w == (400, "invalid_request", "Credential locked")
               for w in wrong if w not in checked), wrong
    status, body = await csc.authorize(tokens[0], cred)  # the right PIN, afterwards
    assert (status, body["error_description"]) == (400, "Credential locked")
    dep.rssp("credential", "unlock", str(dep.directory), cred.id)
    sad = await csc.sad(tokens[0], cred)
    assert (await csc.sign(tokens[0], cred, sad, [digest(b"unlocked")], ECDSA_SHA256))[0] == 200


async def test_concurrent_right_pins_never_lock_the_credential(csc, dep):
    """A signing application authorizing several documents at once with the right PIN is not locked out."""
    cred = dep.add_credential(f"busy-{secrets.token_hex(4)}", "alice", "ec-p256")
    token = await csc.token()
    answers = await asyncio.gather(*(csc.authorize(token, cred) for _ in range(12)))
    assert {s for s, _ in answers} <= {200, 429}, answers
    assert any(s == 200 for s, _ in answers)
    sad = await csc.sad(token, cred)  # and afterwards it authorizes as usual
    assert (await csc.sign(token, cred, sad, [digest(b"not locked")], ECDSA_SHA256))[0] == 200
