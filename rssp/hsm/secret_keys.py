"""Secret keys on the token: AES-256-GCM for secret data (e.g. TOTP seeds), HMAC-SHA-256 for
the SAM's integrity MACs. Found by label; created once however many processes race to.
HSM thread only; a function's name is the ``operation`` label of its hop.
"""

from __future__ import annotations

import random
import secrets
import time

from pkcs11 import Attribute, KeyType, Mechanism, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.mechanisms import GCMParams

from .executor import guard
from .objects import find_all, find_secret, generate_secret, secret_key
from .sessions import TokenSession
from .types import HsmError, KeyNotFound

GCM_NONCE_BYTES = 12
GCM_TAG_BYTES = 16
AES_CREATE_ATTEMPTS = 5


@guard("secret key lookup")
def find_secret_key(shared: TokenSession, label: str, kind: KeyType) -> None:
    """KeyNotFound unless the secret key ``label`` is on the token (its handle is cached)."""
    secret_key(shared, label, kind)


@guard("AES key creation")
def ensure_aes(shared: TokenSession, label: str) -> None:
    ensure_secret(shared, label, KeyType.AES)


@guard("secret key creation")
def ensure_secret(shared: TokenSession, label: str, kind: KeyType) -> None:
    """Find or create the key; if another process created one at the same moment, the one
    who sees two keys destroys its own, so all processes converge on a single key."""
    for _ in range(AES_CREATE_ATTEMPTS):
        if find_secret(shared.session, label, kind):
            secret_key(shared, label, kind)
            return
        mine = generate_secret(shared.session, label, kind)
        if len(find_secret(shared.session, label, kind)) == 1:
            shared.secret_keys[label] = mine
            return
        mine.destroy()
        time.sleep(random.uniform(0.01, 0.1))  # noqa: S311 (jitter, not a secret)
    raise HsmError("could not create a unique secret key (concurrent creation)")


@guard("MAC")
def mac(shared: TokenSession, label: str, messages: list[bytes]) -> list[bytes]:
    key = secret_key(shared, label, KeyType.GENERIC_SECRET)
    return [bytes(key.sign(bytes(m), mechanism=Mechanism.SHA256_HMAC)) for m in messages]


@guard("encryption")
def encrypt(shared: TokenSession, label: str, plaintext: bytes, aad: bytes) -> bytes:
    nonce = secrets.token_bytes(GCM_NONCE_BYTES)
    sealed: bytes = secret_key(shared, label).encrypt(
        bytes(plaintext), mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad)
    )
    return nonce + sealed


@guard("decryption")
def decrypt(shared: TokenSession, label: str, blob: bytes, aad: bytes) -> bytes:
    key = secret_key(shared, label)
    if len(blob) < GCM_NONCE_BYTES + GCM_TAG_BYTES:
        raise HsmError("decryption failed: blob too short")
    nonce, sealed = bytes(blob[:GCM_NONCE_BYTES]), bytes(blob[GCM_NONCE_BYTES:])
    try:
        plaintext: bytes = key.decrypt(sealed, mechanism=Mechanism.AES_GCM, mechanism_param=GCMParams(nonce, aad))
    except (p11e.GeneralError, p11e.EncryptedDataInvalid, p11e.FunctionFailed):
        # SoftHSM2 reports a GCM tag mismatch as CKR_GENERAL_ERROR.
        raise HsmError("decryption failed: wrong key or aad, or tampered data") from None
    return plaintext


@guard("secret key destruction")
def destroy_secret(shared: TokenSession, label: str) -> None:
    shared.secret_keys.pop(label, None)
    found = find_all(shared.session, ObjectClass.SECRET_KEY, {Attribute.LABEL: label})
    if not found:
        raise KeyNotFound("no secret key with that label")
    for key in found:
        key.destroy()
