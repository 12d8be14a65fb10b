"""Level 3 over HTTP, SQLite and PostgreSQL: PIN AND TOTP at SCAL 2, and SADs the SAM protects.

Each level-3 SAD row carries an HSM MAC over its whole state, verified inside every spend; a row
edited in the database is refused ("Invalid parameter SAD") and audited as ``sad.tamper``.
Credentials are made with ``rssp credential create --level 3 --totp`` on the shared deployments.
"""

from __future__ import annotations

import base64
import time

import pyotp
from sqlalchemy import select, update

from client import SHA256, b64, digest
from level3_helpers import PIN3, Db, certificate, level3, sign_algo, verify
from rssp.auth.secrets import digest as secret_digest
from rssp.store.schema import audit, sads

INVALID_SAD = "Invalid parameter SAD"


def _fresh(label: str, n: int = 1) -> list[bytes]:
    return [digest(f"level 3 {label} {i} {time.time_ns()}".encode()) for i in range(n)]


def _wrong_otp(cred) -> str:
    """A code no step of the server's window accepts now."""
    totp, now = pyotp.TOTP(cred.totp_seed), time.time()
    valid = {totp.at(now + k * 30) for k in range(-2, 3)}
    return next(c for c in (f"{i:06d}" for i in range(1000)) if c not in valid)


async def test_level3_is_scal2_with_pin_and_otp(csc, dep):
    cred = level3(dep, "l3_ec")
    token = await csc.token()
    status, info = await csc.call("credentials/info", {"credentialID": cred.id}, token)
    assert status == 200, info
    assert info["SCAL"] == "2" and info["auth"]["expression"] == "PIN AND OTP"
    assert {o["id"]: o["format"] for o in info["auth"]["objects"]} == {"PIN": "A", "OTP": "N"}
    # SCAL 2: the SAD must be bound to hashes; nothing is counted for a malformed request
    body = {"credentialID": cred.id, "numSignatures": 1,
            "authData": [{"id": "PIN", "value": PIN3}, {"id": "OTP", "value": _wrong_otp(cred)}]}
    status, err = await csc.call("credentials/authorize", body, token)
    assert (status, err["error_description"]) == (400, "Missing (or invalid type) array parameter hashes")


async def test_level3_batches_sign_and_verify_rsa_and_ec(csc, dep):
    token = await csc.token()
    for name, key in (("l3_ec", "ec-p256"), ("l3_rsa", "rsa-2048")):
        cred = level3(dep, name, key)
        hashes = _fresh(name, 3)
        sad = await csc.sad(token, cred, num=3, hashes=hashes)
        status, out = await csc.sign(token, cred, sad, hashes, sign_algo(cred))
        assert status == 200, out
        cert = await certificate(csc, token, cred)
        for h, s in zip(hashes, out["signatures"], strict=True):
            verify(cert, h, base64.b64decode(s))
        status, err = await csc.sign(token, cred, sad, hashes[:1], sign_algo(cred))
        assert status == 400, err  # spent


async def test_each_edit_of_a_level3_sad_row_is_refused_and_audited(csc, dep):
    cred, other = level3(dep, "l3_ec"), level3(dep, "l3_ec2")
    token = await csc.token()
    h1, h2, forged = _fresh("tamper", 3)
    sad = await csc.sad(token, cred, num=2, hashes=[h1, h2])
    key = secret_digest(sad)
    algo = sign_algo(cred)
    async with Db(dep) as db:
        bob = await db.user_id("bob")
        row = await db.one(select(sads).where(sads.c.sad_hash == key))
        assert row.mac is not None and row.sealed_kek is not None
        this_row = update(sads).where(sads.c.sad_hash == key)
        assert h1 in row.digests and h2 in row.digests  # the bound hashes live in the row
        edits = [  # (field, edit, restore, digest to sign)
            ("hashes", this_row.values(digests=row.digests.replace(h1, forged)), this_row.values(digests=row.digests),
             forged),
            ("remaining", this_row.values(remaining=10), this_row.values(remaining=row.remaining), h1),
            ("expires_at", this_row.values(expires_at=row.expires_at + 3600),
             this_row.values(expires_at=row.expires_at), h1),
            ("not_after", this_row.values(not_after=row.not_after + 3600), this_row.values(not_after=row.not_after),
             h1),
            ("credential_id", this_row.values(credential_id=other.id), this_row.values(credential_id=cred.id), h1),
            ("user_id", this_row.values(user_id=bob), this_row.values(user_id=row.user_id), h1),
        ]
        for field, edit, restore, signed in edits:
            before = await db.audit_count("sad.tamper", cred.id)
            await db.execute(edit)
            status, err = await csc.sign(token, cred, sad, [signed], algo)
            assert (status, err["error_description"]) == (400, INVALID_SAD), (field, err)
            assert await db.audit_count("sad.tamper", cred.id) == before + 1, field
            await db.execute(restore)
        # the control: the row exactly as the SAM wrote it signs
        status, out = await csc.sign(token, cred, sad, [h1], algo)
        assert status == 200, out
        verify(await certificate(csc, token, cred), h1, base64.b64decode(out["signatures"][0]))
        # the MAC was rewritten with the spend: a spent hash marked unused again is an edit too
        before = await db.audit_count("sad.tamper", cred.id)
        await db.execute(this_row.values(used_map=b"\0"))
        status, err = await csc.sign(token, cred, sad, [h1], algo)
        assert (status, err["error_description"]) == (400, INVALID_SAD)
        assert await db.audit_count("sad.tamper", cred.id) == before + 1
        async with db.store.read() as conn:
            details = (await conn.execute(select(audit.c.detail).where(audit.c.action == "sad.tamper"))).scalars().all()
            assert all(sad not in (d or "") and key not in (d or "") for d in details)


async def test_a_sad_of_another_level3_credential_cannot_sign(csc, dep):
    cred, other = level3(dep, "l3_ec"), level3(dep, "l3_ec2")
    token = await csc.token()
    (h,) = _fresh("other")
    sad = await csc.sad(token, other, hashes=[h])
    async with Db(dep) as db:
        before = await db.audit_count("sad.tamper")
        status, err = await csc.sign(token, cred, sad, [h], sign_algo(cred))
        assert (status, err["error_description"]) == (400, INVALID_SAD)
        assert await db.audit_count("sad.tamper") == before  # a mistake, not an edit
    status, out = await csc.sign(token, other, sad, [h], sign_algo(other))
    assert status == 200, out  # nothing was spent by the refusal


async def test_wrong_pin_or_otp_is_refused_and_counted_toward_lockout(csc, dep):
    cred = level3(dep, "l3_lock")
    token = await csc.token()
    (h,) = _fresh("lock")

    async def attempt(pin: str, otp: str) -> tuple[int, dict]:
        body = {"credentialID": cred.id, "numSignatures": 1, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
                "authData": [{"id": "PIN", "value": pin}, {"id": "OTP", "value": otp}]}
        return await csc.call("credentials/authorize", body, token)

    async with Db(dep) as db:
        status, err = await attempt("Wrong-pin-1357", _wrong_otp(cred))
        assert (status, err["error"]) == (400, "invalid_authentication_data")
        status, err = await attempt(PIN3, _wrong_otp(cred))  # the right PIN alone is not enough
        assert (status, err["error"]) == (400, "invalid_authentication_data")
        assert (await db.credential(cred.id)).failed_attempts == 2
        for _ in range(3):
            status, err = await attempt(PIN3[:-1], _wrong_otp(cred))
            assert status == 400
        row = await db.credential(cred.id)
        assert row.locked and row.failed_attempts == 5
    status, err = await csc.authorize(token, cred, hashes=[h])
    assert (status, err["error_description"]) == (400, "Credential locked")


async def test_extend_transaction_carries_the_key_to_the_new_sad_only(csc, dep):
    cred = level3(dep, "l3_rsa", "rsa-2048")
    token = await csc.token()
    h1, h2, h3 = _fresh("extend", 3)
    sad = await csc.sad(token, cred, num=2, hashes=[h1, h2])
    status, out = await csc.sign(token, cred, sad, [h1], sign_algo(cred))
    assert status == 200, out
    extend = {"credentialID": cred.id, "SAD": sad}
    status, err = await csc.call("credentials/extendTransaction",
                                 {**extend, "hashes": [b64(h3)], "hashAlgorithmOID": SHA256}, token)
    assert (status, err["error_description"]) == (400, "Hash is not authorized by the SAD.")
    status, ext = await csc.call("credentials/extendTransaction", extend, token)
    assert status == 200, ext
    new = ext["SAD"]
    async with Db(dep) as db:
        row = await db.one(select(sads).where(sads.c.sad_hash == secret_digest(new)))
        assert row.remaining == 1 and row.mac is not None and row.sealed_kek is not None
        assert await db.one(select(sads).where(sads.c.sad_hash == secret_digest(sad))) is None
    status, err = await csc.sign(token, cred, sad, [h2], sign_algo(cred))
    assert (status, err["error_description"]) == (400, INVALID_SAD)  # the old SAD is consumed
    status, err = await csc.sign(token, cred, new, [h1], sign_algo(cred))
    assert status == 400, err  # spent before the extension: not carried over
    status, out = await csc.sign(token, cred, new, [h2], sign_algo(cred))
    assert status == 200, out
    verify(await certificate(csc, token, cred), h2, base64.b64decode(out["signatures"][0]))
