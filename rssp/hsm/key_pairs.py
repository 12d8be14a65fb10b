"""Signing key pairs on the token: generate, look up, list, destroy. HSM thread only.

Each function takes the process's logged-in :class:`~rssp.hsm.sessions.TokenSession`; the
:class:`~rssp.hsm.Hsm` facade runs it on the HSM thread. A function's name is the
``operation`` label of its hop in ``rssp_hsm_call_duration_seconds``.
"""

from __future__ import annotations

import secrets

from pkcs11 import Attribute, ObjectClass

from .encoding import spki_of
from .executor import guard
from .objects import (
    KEY_ID_BYTES,
    CachedKey,
    ambiguous,
    by_id,
    find_all,
    forget_private_key,
    generate_pair,
    key_type_of,
)
from .sessions import TokenSession
from .types import GeneratedKey, KeyNotFound, KeySpec


@guard("key generation")
def generate(shared: TokenSession, spec: KeySpec, label: str) -> GeneratedKey:
    """A non-extractable signing key pair as token objects with a random CKA_ID."""
    raw_id = secrets.token_bytes(KEY_ID_BYTES)
    public, private = generate_pair(shared.session, spec, raw_id, label)
    shared.private_keys[raw_id.hex()] = CachedKey(private, key_type_of(spec))
    return GeneratedKey(raw_id.hex(), spki_of(public))


@guard("public key lookup")
def public_key(shared: TokenSession, key_id: str) -> bytes:
    found = find_all(shared.session, ObjectClass.PUBLIC_KEY, by_id(key_id))
    if len(found) != 1:
        raise KeyNotFound("no public key with that key ID") if not found else ambiguous()
    return spki_of(found[0])


@guard("key lookup")
def find_key(shared: TokenSession, key_id: str) -> None:
    """KeyNotFound unless a private key with that key ID is on the token (searched, no cache)."""
    if not find_all(shared.session, ObjectClass.PRIVATE_KEY, by_id(key_id)):
        raise KeyNotFound("no private key with that key ID")


@guard("key listing")
def key_pairs(shared: TokenSession) -> list[tuple[str, str]]:
    found = find_all(shared.session, ObjectClass.PRIVATE_KEY, {})
    out = []
    for key in found:
        attrs = key.get_attributes([Attribute.ID, Attribute.LABEL])
        out.append((bytes(attrs[Attribute.ID] or b"").hex(), str(attrs[Attribute.LABEL] or "")))
    return out


@guard("key destruction")
def destroy(shared: TokenSession, key_id: str) -> None:
    attrs = by_id(key_id)
    forget_private_key(shared, key_id)
    shared.session_keys.discard(attrs[Attribute.ID].hex())
    private = find_all(shared.session, ObjectClass.PRIVATE_KEY, attrs)
    if not private:
        raise KeyNotFound("no private key with that key ID")
    for obj in private + find_all(shared.session, ObjectClass.PUBLIC_KEY, attrs):
        obj.destroy()
