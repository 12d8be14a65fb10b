"""Level-3 keys, kept outside the token wrapped: generate, wrap, rewrap, unwrap, sign with one.

The mechanics (templates, KEK import, CKM_AES_KEY_WRAP_PAD) are in :mod:`rssp.hsm.wrapping`;
these are the operations the :class:`~rssp.hsm.Hsm` facade offers on top of them. HSM thread
only; a function's name is the ``operation`` label of its hop.
"""

from __future__ import annotations

import functools
import secrets
from collections.abc import Callable
from typing import Any

from pkcs11 import Attribute, KeyType

from . import key_pairs, wrapping
from .encoding import spki_of
from .executor import guard
from .objects import KEY_ID_BYTES, CachedKey, find_secret, generate_pair, key_type_of, private_key, secret_key
from .plans import check_digests
from .sessions import TokenSession
from .signing import sign_with
from .types import GeneratedKey, HsmError, KeySpec, SignMechanism
from .wrapping import Wrapping


def _token_wrap_keys(shared: TokenSession) -> Callable[[str], Any]:
    """How :func:`wrapping.wrapping_key` finds a labelled AES token key (cached on the session)."""
    return functools.partial(secret_key, shared, kind=KeyType.AES)


@guard("key generation")
def generate_wrappable(shared: TokenSession, spec: KeySpec, label: str) -> GeneratedKey:
    raw_id = secrets.token_bytes(KEY_ID_BYTES)
    public, private = generate_pair(shared.session, spec, raw_id, label, wrappable=True)
    try:
        spki = spki_of(public)
    finally:
        public.destroy()  # the SPKI is all that is needed of it
    shared.private_keys[raw_id.hex()] = CachedKey(private, key_type_of(spec))
    shared.session_keys.add(raw_id.hex())
    return GeneratedKey(raw_id.hex(), spki)


@guard("key wrapping")
def wrap(shared: TokenSession, key_id: str, wrapping_key: Wrapping) -> bytes:
    private = private_key(shared, key_id).key
    with wrapping.wrapping_key(shared.session, wrapping_key, _token_wrap_keys(shared)) as kek:
        blob = wrapping.wrap(kek, private)
    key_pairs.destroy(shared, key_id)
    return blob


@guard("key wrapping")
def rewrap(shared: TokenSession, blob: bytes, kind: str, old: Wrapping, new: Wrapping) -> bytes:
    session, token_keys = shared.session, _token_wrap_keys(shared)
    with wrapping.wrapping_key(session, old, token_keys) as kek:
        private = wrapping.unwrap(kek, blob, wrapping.key_type(kind), extractable=True)
    try:
        with wrapping.wrapping_key(session, new, token_keys) as kek:
            return wrapping.wrap(kek, private)
    finally:
        private.destroy()


@guard("key unwrapping")
def unwrap(shared: TokenSession, blob: bytes, kind: str, wrapping_key: Wrapping) -> str:
    with wrapping.wrapping_key(shared.session, wrapping_key, _token_wrap_keys(shared)) as kek:
        private = wrapping.unwrap(kek, blob, wrapping.key_type(kind))
    key_id = bytes(private[Attribute.ID]).hex()
    shared.private_keys[key_id] = CachedKey(private, private.key_type)
    shared.session_keys.add(key_id)
    return key_id


@guard("signing")
def sign_wrapped(shared: TokenSession, blob: bytes, kind: str, kek: bytes, mech: SignMechanism,
                 digests: list[bytes]) -> list[bytes]:
    if not isinstance(kek, bytes):  # a signature needs the signer's factor, never a token key
        raise HsmError("signing with a wrapped key needs its key-encryption key")
    check_digests(mech, digests)
    key_type = wrapping.key_type(kind)
    with wrapping.wrapping_key(shared.session, kek, _token_wrap_keys(shared)) as key:
        private = wrapping.unwrap(key, blob, key_type)
    try:
        return sign_with(CachedKey(private, key_type), mech, digests)
    finally:
        private.destroy()


@guard("wrap key creation")
def ensure_wrap(shared: TokenSession, label: str) -> None:
    """Create the AES token key ``label`` that can only wrap and unwrap, unless it exists."""
    if not find_secret(shared.session, label, KeyType.AES):
        wrapping.generate_token_wrap_key(shared.session, label)
