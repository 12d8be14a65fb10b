"""The level-3 key-encryption key (KEK): made from the signer's PIN, and only with the HSM.

``KEK = HMAC-SHA-256_K(context || argon2id(PIN, salt))`` where K is ``rssp-sam-kdf``, a
non-extractable HSM key, and the salt is the credential's own. The private key of a level-3
credential exists only wrapped under this KEK (:mod:`rssp.hsm.wrapping`), so signing needs
the PIN: neither a copy of the database (no K) nor an operator holding the HSM (no PIN)
can make the KEK, and guessing the PIN costs one argon2id run *and* one HSM operation per
guess. The numbers are in ``docs/level3.md``.

The stored PIN record (``credentials.pin_hash``) is ``$rssp-l3$v=1$m=..,t=..,p=..$salt$check``
with ``check = HMAC(KEK, "PIN verifier")``: checking a PIN and recomputing the KEK are the same
work, so the record gives an offline attacker nothing to test guesses against without K.

Once made, the KEK travels only sealed (:func:`seal`) under a key derived from a bearer
secret the server stores only as a digest: a SAD, an OAuth code, a credential-scoped access
token. Whoever holds that secret can make the server unwrap the key; the database alone cannot.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import hashlib
import hmac
import secrets
from dataclasses import dataclass

from argon2.low_level import Type, hash_secret_raw
from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from rssp.auth.argon2_cost import kek_cost
from rssp.hsm import Hsm
from rssp.sam.samkeys import KEK_KDF_KEY
from rssp.threads import named_pool

RECORD_PREFIX = "$rssp-l3$"
VERSION = 1
SALT_BYTES = 16
MIN_PIN, MAX_PIN = 8, 64
_SEAL_INFO = b"rssp level-3 KEK seal v1"
_NONCE = 12
# One derivation at a time per process: each takes 128 MiB for a third of a second.
_pool = named_pool("rssp-kek", 1)


def pin_problem(pin: str) -> str | None:
    """Why ``pin`` is not acceptable for a level-3 credential, or None.

    8 to 64 printable ASCII characters (no spaces), at least one letter and one digit: the PIN
    is all that stands between an insider who holds the HSM and the key (docs/level3.md).
    """
    if not MIN_PIN <= len(pin) <= MAX_PIN or not all("!" <= c <= "~" for c in pin):
        return f"a level-3 PIN must be {MIN_PIN} to {MAX_PIN} printable ASCII characters without spaces"
    if not (any(c.isalpha() for c in pin) and any(c.isdigit() for c in pin)):
        return "a level-3 PIN must contain at least one letter and one digit"
    return None


@dataclass(frozen=True)
class PinRecord:
    """What ``credentials.pin_hash`` holds for a level-3 credential (parameters travel with it)."""

    memory_kib: int
    passes: int
    lanes: int
    salt: bytes
    check: bytes

    def encode(self) -> str:
        return (f"{RECORD_PREFIX}v={VERSION}$m={self.memory_kib},t={self.passes},p={self.lanes}"
                f"${_b64(self.salt)}${_b64(self.check)}")

    @classmethod
    def parse(cls, text: str | None) -> PinRecord | None:
        if not text or not text.startswith(RECORD_PREFIX):
            return None
        try:
            version, params, salt, check = text[len(RECORD_PREFIX):].split("$")
            values = dict(item.split("=", 1) for item in params.split(","))
            if version != f"v={VERSION}":
                return None
            return cls(int(values["m"]), int(values["t"]), int(values["p"]), _unb64(salt), _unb64(check))
        except (ValueError, KeyError, binascii.Error):
            return None


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode().rstrip("=")


def _unb64(text: str) -> bytes:
    return base64.b64decode(text + "=" * (-len(text) % 4), validate=True)


def is_pin_record(text: str | None) -> bool:
    return PinRecord.parse(text) is not None


async def _derive(hsm: Hsm, credential_id: str, pin: str, record: PinRecord) -> bytes:
    stretched = await asyncio.get_running_loop().run_in_executor(
        _pool, lambda: hash_secret_raw(pin.encode("utf-8"), record.salt, time_cost=record.passes,
                                       memory_cost=record.memory_kib, parallelism=record.lanes, hash_len=32,
                                       type=Type.ID))
    context = b"rssp level-3 KEK v1\0" + credential_id.encode() + b"\0"
    return await hsm.mac(KEK_KDF_KEY, context + stretched)


def _check(kek: bytes) -> bytes:
    return hmac.new(kek, b"rssp level-3 PIN verifier v1", hashlib.sha256).digest()


async def new_kek(hsm: Hsm, credential_id: str, pin: str) -> tuple[bytes, str]:
    """A fresh salt, the KEK for ``pin`` and the PIN record to store (enrollment, linkEid)."""
    cost = kek_cost()  # argon2id, [security] level3_kek_* (default 128 MiB, 3 passes, 1 lane: about 0.3 s here)
    params = PinRecord(cost.memory_kib, cost.passes, cost.lanes, secrets.token_bytes(SALT_BYTES), b"")
    kek = await _derive(hsm, credential_id, pin, params)
    record = PinRecord(params.memory_kib, params.passes, params.lanes, params.salt, _check(kek))
    return kek, record.encode()


async def unlock(hsm: Hsm, credential_id: str, stored: str | None, pin: str) -> bytes | None:
    """The KEK if ``pin`` is the credential's PIN, else None (same work either way)."""
    record = PinRecord.parse(stored)
    if record is None:  # no record (or not a level-3 one): burn the same work, then refuse
        cost = kek_cost()
        dummy = PinRecord(cost.memory_kib, cost.passes, cost.lanes, bytes(SALT_BYTES), b"")
        await _derive(hsm, credential_id, pin, dummy)
        return None
    kek = await _derive(hsm, credential_id, pin, record)
    return kek if hmac.compare_digest(_check(kek), record.check) else None


# --- the KEK sealed to a bearer secret ---------------------------------------------------------

def _seal_key(secret: str) -> AESGCM:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=_SEAL_INFO).derive(secret.encode("utf-8"))
    return AESGCM(key)


def seal(secret: str, kek: bytes, context: bytes) -> bytes:
    """``kek`` encrypted under HKDF(``secret``), bound to ``context`` (e.g. the SAD's digest and
    credential): nonce(12) || ciphertext || tag(16)."""
    nonce = secrets.token_bytes(_NONCE)
    return nonce + _seal_key(secret).encrypt(nonce, kek, context)


def unseal(secret: str, blob: bytes | None, context: bytes) -> bytes | None:
    """The KEK :func:`seal` sealed, or None for a wrong secret, context or a damaged blob."""
    if not blob or len(blob) <= _NONCE:
        return None
    try:
        return _seal_key(secret).decrypt(bytes(blob[:_NONCE]), bytes(blob[_NONCE:]), context)
    except InvalidTag:
        return None
