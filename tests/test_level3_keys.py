"""A level-3 key signs only with the signer's factor: a copy of the database and of the HSM token,
with the HSM PIN, produces no signature with it (SQLite and PostgreSQL).

The attacker is an operator (or a thief) with everything but the signer's PIN: the database
rows (wrapped key, PIN record, a live SAD's sealed KEK), the token directory and the HSM user
PIN. The attack runs in its own process on a copy of the token, with python-pkcs11 directly: it
tries every private key on the token, and unwraps the stored blob with every secret key it can
find or make (the token's keys, HMACs of the stored values by the token's MAC keys, the stored
values themselves as AES keys). The same attack against a level-1 key does produce a valid
signature: that contrast shows the attack would catch a level-3 key that could sign.
"""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import textwrap
import time
from pathlib import Path

from sqlalchemy import select

from client import digest
from level3_helpers import Db, level3
from rssp.store.schema import sads

REPO = Path(__file__).resolve().parent.parent

_ATTACK = textwrap.dedent('''
    import hashlib, json, sys
    import pkcs11
    from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
    from pkcs11.constants import DEFAULT
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed, encode_dss_signature

    args = json.load(sys.stdin)
    message = hashlib.sha256(b"forged by someone without the PIN").digest()
    targets = {name: serialization.load_der_public_key(bytes.fromhex(t["spki"])) for name, t in args["targets"].items()}
    signed = {name: False for name in targets}
    tried = {"private_keys": 0, "secret_keys": 0, "made_keys": 0, "unwraps": 0, "unwrapped": 0}

    def check(raw):
        r, s = int.from_bytes(raw[:32], "big"), int.from_bytes(raw[32:], "big")
        for name, public in targets.items():
            try:
                public.verify(encode_dss_signature(r, s), message, ec.ECDSA(Prehashed(hashes.SHA256())))
                signed[name] = True
            except Exception:
                pass

    def try_sign(key):
        try:
            check(bytes(key.sign(message, mechanism=Mechanism.ECDSA)))
        except Exception:
            pass

    lib = pkcs11.lib(args["module"])
    with lib.get_token(token_label=args["label"]).open(rw=True, user_pin=args["pin"]) as session:
        for key in list(session.get_objects({Attribute.CLASS: ObjectClass.PRIVATE_KEY})):
            tried["private_keys"] += 1
            try_sign(key)
        found = list(session.get_objects({Attribute.CLASS: ObjectClass.SECRET_KEY}))
        tried["secret_keys"] = len(found)
        stored = [bytes.fromhex(v) for v in args["stored"]]
        made = []
        def make(value):
            value = hashlib.sha256(value).digest() if len(value) != 32 else value
            made.append(session.create_object({
                Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: value,
                Attribute.TOKEN: False, Attribute.UNWRAP: True, Attribute.WRAP: True, Attribute.DECRYPT: True}))
        for value in stored:
            make(value)
            for key in found:  # the SAM's own keys, used as an attacker would: on the stored values
                try:
                    make(bytes(key.sign(value, mechanism=Mechanism.SHA256_HMAC)))
                except Exception:
                    pass
        tried["made_keys"] = len(made)
        template = {Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT,
                    Attribute.TOKEN: False, Attribute.SENSITIVE: True, Attribute.SIGN: True}
        for blob in (bytes.fromhex(b) for b in args["blobs"]):
            for key in found + made:
                for mech in (Mechanism.AES_KEY_WRAP_PAD, Mechanism.AES_KEY_WRAP):
                    tried["unwraps"] += 1
                    try:
                        private = key.unwrap_key(ObjectClass.PRIVATE_KEY, KeyType.EC, blob, mechanism=mech,
                                                 capabilities=MechanismFlag.SIGN, template=template)
                    except Exception:
                        continue
                    tried["unwrapped"] += 1
                    try_sign(private)
    print(json.dumps({"signed": signed, "tried": tried}))
''')


def _copy_token(dep, into: Path) -> Path:
    """The instance's SoftHSM2 token directory copied, with a config of its own."""
    shutil.copytree(dep.directory / "tokens", into / "tokens")
    conf = into / "softhsm2.conf"
    conf.write_text(f"directories.tokendir = {into / 'tokens'}\nobjectstore.backend = file\nlog.level = ERROR\n")
    return conf


async def test_a_copy_of_the_database_and_token_signs_nothing_with_a_level3_key(csc, dep, tmp_path):
    l1, l3 = dep.creds["p256"], level3(dep, "l3_ec")
    token = await csc.token()
    await csc.sad(token, l3, hashes=[digest(f"a live SAD in the copy {time.time_ns()}".encode())])
    async with Db(dep) as db:
        rows = {name: await db.credential(c.id) for name, c in (("level1", l1), ("level3", l3))}
        async with db.store.read() as conn:
            live = (await conn.execute(select(sads.c.sealed_kek, sads.c.mac).where(
                sads.c.credential_id == l3.id, sads.c.sealed_kek.is_not(None)))).all()
    assert live and rows["level3"].wrapped_key is not None and rows["level1"].wrapped_key is None
    level3_row = rows["level3"]
    stored = [level3_row.wrapped_key, level3_row.pin_hash.encode(), level3_row.id.encode(),
              *(bytes(r.sealed_kek) for r in live), *(bytes(r.mac) for r in live)]
    conf = _copy_token(dep, tmp_path)
    args = {
        "module": "/usr/lib/softhsm/libsofthsm2.so", "label": "rssp",
        "pin": (dep.directory / "hsm-pin").read_text().strip(),
        "targets": {name: {"spki": row.public_key.hex()} for name, row in rows.items()},
        "blobs": [level3_row.wrapped_key.hex()], "stored": [v.hex() for v in stored],
    }
    env = {**os.environ, "SOFTHSM2_CONF": str(conf)}
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", _ATTACK], input=json.dumps(args), env=env,
                                   capture_output=True, text=True, timeout=300, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    result = json.loads(done.stdout)
    tried = result["tried"]
    assert tried["private_keys"] >= 1 and tried["secret_keys"] >= 3 and tried["unwraps"] > 0, tried
    assert result["signed"]["level1"] is True, result  # the attack works where a key is only PIN-of-the-HSM protected
    assert result["signed"]["level3"] is False, tried
    assert tried["unwrapped"] == 0, tried


async def test_no_level3_key_lives_on_the_token(dep):
    """The token holds no object of a level-3 key: only the wrapped blob in the database exists."""
    l3 = level3(dep, "l3_ec")
    async with Db(dep) as db:
        key_id = (await db.credential(l3.id)).hsm_key_id
    code = textwrap.dedent('''
        import json, sys, pkcs11
        from pkcs11 import Attribute
        lib = pkcs11.lib("/usr/lib/softhsm/libsofthsm2.so")
        with lib.get_token(token_label="rssp").open(user_pin=sys.argv[1]) as s:
            print(len(list(s.get_objects({Attribute.ID: bytes.fromhex(sys.argv[2])}))))
    ''')
    env = {**os.environ, "SOFTHSM2_CONF": str(dep.directory / "softhsm2.conf")}
    pin = (dep.directory / "hsm-pin").read_text().strip()
    done = await asyncio.to_thread(subprocess.run, [sys.executable, "-c", code, pin, key_id],
                                   env=env, capture_output=True, text=True, timeout=120, cwd=REPO)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() == "0"
