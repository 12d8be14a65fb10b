"""credentials/changePIN at level 3, SQLite and PostgreSQL: the key is re-wrapped inside the HSM
under the new PIN's KEK, and nothing made with the old PIN opens it in the live database.

The operator chose the initial PIN, so they know it, and they hold the HSM PIN and the database.
After the signer's change: the SAD they could have taken before signs nothing, the old PIN is
refused at ``credentials/authorize`` (and counted), and the attack of ``tests/test_level3_keys.py``
run with the old PIN — the KEK recomputed in a copy of the token from the old PIN and either PIN
record, and the KEK unsealed from that old SAD — unwraps nothing of the live database. The
same attack on the blob as a backup made before the change held it does sign: that is the
documented limit (docs/level3.md, "Changing the PIN"), and it shows the attack would catch a
key that the old PIN still opened. The new PIN signs in whichever server process answers,
also in one that cached the credential before the change.
"""

from __future__ import annotations

import base64
import json
import os
import subprocess
import sys
import textwrap

from sqlalchemy import func, select

from client import ECDSA_SHA256
from level3_helpers import PIN3, Db, certificate, verify
from pin_change_helpers import change_pin, changed, credential, digests, row, signer
from rssp.auth.secrets import digest as secret_digest
from rssp.sam.kek import unseal
from rssp.store.schema import sads
from test_level3_keys import _copy_token
from test_suspension import fresh  # every request on a new connection: both workers answer

__all__ = ["fresh"]

NEW_PIN3 = "Pat-new-PIN-97531"
WARM, AFTER = 8, 8  # signatures over fresh connections before and after the change: both workers take part

_ATTACK = textwrap.dedent('''
    import base64, hashlib, json, sys
    import pkcs11
    from argon2.low_level import Type, hash_secret_raw
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
    from pkcs11.constants import DEFAULT
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    args = json.load(sys.stdin)
    message = hashlib.sha256(b"signed with the PIN the operator chose").digest()
    public = serialization.load_der_public_key(bytes.fromhex(args["spki"]))

    def stretched(pin, record):  # $rssp-l3$v=1$m=..,t=..,p=..$salt$check (docs/level3.md)
        _, _, _, params, salt, _ = record.split("$")
        p = dict(item.split("=") for item in params.split(","))
        return hash_secret_raw(pin.encode(), base64.b64decode(salt + "=" * (-len(salt) % 4)), time_cost=int(p["t"]),
                               memory_cost=int(p["m"]), parallelism=int(p["p"]), hash_len=32, type=Type.ID)

    def signs(key):
        try:
            raw = bytes(key.sign(message, mechanism=Mechanism.ECDSA))
            r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
            public.verify(encode_dss_signature(r, s), message, ec.ECDSA(Prehashed(hashes.SHA256())))
            return True
        except Exception:
            return False

    lib = pkcs11.lib(args["module"])
    result = {}
    with lib.get_token(token_label=args["label"]).open(rw=True, user_pin=args["pin"]) as session:
        kdf = session.get_key(ObjectClass.SECRET_KEY, KeyType.GENERIC_SECRET, label="rssp-sam-kdf")
        context = b"rssp level-3 KEK v1\\0" + args["credential"].encode() + b"\\0"
        keks = [bytes(kdf.sign(context + stretched(args["old_pin"], r), mechanism=Mechanism.SHA256_HMAC))
                for r in args["records"]] + [bytes.fromhex(k) for k in args["keks"]]
        template = {Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT,
                    Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.SIGN: True}
        for name, blob in args["blobs"].items():
            result[name] = {"tried": 0, "unwrapped": 0, "signed": False}
            for value in keks:
                kek = session.create_object({
                    Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: value,
                    Attribute.TOKEN: False, Attribute.UNWRAP: True, Attribute.WRAP: True})
                for mech in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
                    result[name]["tried"] += 1
                    try:
                        private = kek.unwrap_key(ObjectClass.PRIVATE_KEY, KeyType.EC, bytes.fromhex(blob),
                                                 mechanism=mech, capabilities=MechanismFlag.SIGN, template=template)
                    except Exception:
                        continue
                    result[name]["unwrapped"] += 1
                    result[name]["signed"] = result[name]["signed"] or signs(private)
    print(json.dumps(result))
''')


def _attack(dep, tmp_path, args: dict) -> dict:
    conf = _copy_token(dep, tmp_path)  # the token as it is after the change
    args = {"module": "/usr/lib/softhsm/libsofthsm2.so", "label": "rssp",
            "pin": (dep.directory / "hsm-pin").read_text().strip(), **args}
    done = subprocess.run([sys.executable, "-c", _ATTACK], input=json.dumps(args), capture_output=True, text=True,
                          env={**os.environ, "SOFTHSM2_CONF": str(conf)}, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    return json.loads(done.stdout)


async def _sign_each(csc, token, cred, sad: str, hashes: list[bytes]) -> list[tuple[int, dict]]:
    return [await csc.sign(token, cred, sad, [h], ECDSA_SHA256) for h in hashes]


async def test_level3_change_rewraps_the_key_and_the_old_pin_opens_nothing(fresh, dep, tmp_path):
    cred = credential(dep, "pat_l3", level=3, pin=PIN3)
    token = await fresh.token(signer(dep))
    before_hashes = digests("level 3 before", WARM + 1)
    old_sad = await fresh.sad(token, cred, num=WARM + 1, hashes=before_hashes)  # what the operator could hold
    assert all(s == 200 for s, _ in await _sign_each(fresh, token, cred, old_sad, before_hashes[:WARM]))
    before = await row(dep, cred)  # the backup an operator might have kept
    async with Db(dep) as db:
        sealed = (await db.one(select(sads.c.sealed_kek).where(sads.c.sad_hash == secret_digest(old_sad)))).sealed_kek
    old_kek = unseal(old_sad, bytes(sealed), f"{secret_digest(old_sad)}\0{cred.id}".encode())
    assert old_kek is not None

    status, body = await change_pin(fresh, token, cred, NEW_PIN3)
    assert (status, body) == (204, None)
    after = await row(dep, cred)
    assert after.wrapped_key != before.wrapped_key and after.pin_hash != before.pin_hash
    assert after.pin_hash.split("$")[4] != before.pin_hash.split("$")[4]  # a new salt
    async with Db(dep) as db:
        assert (await db.one(select(func.count()).select_from(sads).where(sads.c.credential_id == cred.id)))[0] == 0

    status, body = await fresh.sign(token, cred, old_sad, [before_hashes[WARM]], ECDSA_SHA256)
    assert (status, body["error_description"]) == (400, "Invalid parameter SAD")
    status, body = await fresh.authorize(token, cred, hashes=digests("old PIN"))  # the old PIN, a valid OTP
    assert (status, body["error"]) == (400, "invalid_authentication_data")
    assert (await row(dep, cred)).failed_attempts == 1

    new = changed(dep, "pat_l3", NEW_PIN3)
    after_hashes = digests("level 3 after", AFTER)
    sad = await fresh.sad(token, new, num=AFTER, hashes=after_hashes)
    answers = await _sign_each(fresh, token, new, sad, after_hashes)
    assert [s for s, _ in answers] == [200] * AFTER, answers
    cert = await certificate(fresh, token, new)
    for h, (_, out) in zip(after_hashes, answers, strict=True):
        verify(cert, h, base64.b64decode(out["signatures"][0]))
    assert (await row(dep, cred)).failed_attempts == 0

    result = _attack(dep, tmp_path, {
        "spki": after.public_key.hex(), "credential": cred.id, "old_pin": PIN3,
        "records": [before.pin_hash, after.pin_hash], "keks": [old_kek.hex()],
        "blobs": {"live": after.wrapped_key.hex(), "backup": before.wrapped_key.hex()},
    })
    assert result["backup"]["signed"] is True, result  # the attack works on what the old PIN did wrap
    assert result["live"]["tried"] >= 6 and result["live"]["unwrapped"] == 0, result
    assert result["live"]["signed"] is False


async def test_level3_refusals_change_nothing(csc, dep):
    cred = credential(dep, "pat_l3_refused", level=3, pin=PIN3)
    token = await csc.token(signer(dep))
    problems = {"Short-1": "a level-3 PIN must be 8 to 64 printable ASCII characters without spaces",
                "12345678": "a level-3 PIN must contain at least one letter and one digit",
                "no digits here": "a level-3 PIN must be 8 to 64 printable ASCII characters without spaces",
                "Letters-only": "a level-3 PIN must contain at least one letter and one digit"}
    for new_pin, problem in problems.items():  # refused before the factors: no OTP spent, nothing counted
        status, body = await change_pin(csc, token, cred, new_pin, otp="000000")
        assert (status, body["error_description"]) == (400, f"Invalid parameter newPIN: {problem}"), new_pin
    status, body = await change_pin(csc, token, cred, NEW_PIN3, pin="Wrong-pin-864")  # counted, changes nothing
    assert (status, body["error"]) == (400, "invalid_authentication_data")
    status, body = await csc.call("credentials/changePIN", {  # level 3 needs the OTP too (a malformed request)
        "credentialID": cred.id, "authData": [{"id": "PIN", "value": PIN3}], "newPIN": NEW_PIN3, "requestID": "x1"},
        token)
    assert (status, body["error_description"]) == (400, "Missing (or invalid type) array parameter authData")
    after = await row(dep, cred)
    assert after.failed_attempts == 1
    hashes = digests("level 3 unchanged")
    sad = await csc.sad(token, cred, hashes=hashes)
    assert (await csc.sign(token, cred, sad, hashes, ECDSA_SHA256))[0] == 200
