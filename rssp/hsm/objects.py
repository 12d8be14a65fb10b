"""Objects on the token: the templates keys are made with, finding them, their cached handles.

Key pairs are found by CKA_ID (16 random bytes, hex to callers), secret keys by CKA_LABEL.
Handles found once are cached on the :class:`~rssp.hsm.sessions.TokenSession` (a lookup is an
object search, a round trip per signature otherwise). HSM thread only.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

from pkcs11 import Attribute, KeyType, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.util.ec import encode_named_curve_parameters

from . import wrapping
from .sessions import TokenSession
from .types import HsmError, KeyNotFound, KeySpec, UnknownKeyId

KEY_ID_BYTES = 16
_CURVES = {"P-256": "secp256r1", "P-384": "secp384r1"}
STALE_HANDLE_ERRORS = (p11e.KeyHandleInvalid, p11e.ObjectHandleInvalid)  # the object went away under a handle

# Templates: the private key never leaves the token; each key pair can only sign/verify.
_PRIVATE_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.SIGN: True,
}
_PUBLIC_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: False,
    Attribute.VERIFY: True,
}
_SECRET_TEMPLATE: dict[Attribute, Any] = {
    Attribute.TOKEN: True,
    Attribute.PRIVATE: True,
    Attribute.SENSITIVE: True,
    Attribute.EXTRACTABLE: False,
    Attribute.ENCRYPT: True,
    Attribute.DECRYPT: True,
}


@dataclass(frozen=True)
class CachedKey:
    """A private key handle and its type (the type picks the sign plan without a round trip)."""

    key: Any  # a python-pkcs11 PrivateKey; its handle stays valid while the object exists
    key_type: KeyType


def by_id(key_id: str) -> dict[Attribute, Any]:
    """The search template of a hex key ID; an unparsable one cannot name a key on the token."""
    try:
        raw = bytes.fromhex(key_id)
    except (ValueError, TypeError):
        raise UnknownKeyId("no key with that key ID") from None
    if not raw:
        raise UnknownKeyId("no key with that key ID")
    return {Attribute.ID: raw}


def find_all(session: Any, object_class: ObjectClass, attrs: dict[Attribute, Any]) -> list[Any]:
    """All objects of ``object_class`` matching ``attrs`` (search fully consumed = finalised)."""
    return list(session.get_objects({Attribute.CLASS: object_class, **attrs}))


def find_secret(session: Any, label: str, kind: KeyType) -> list[Any]:
    return find_all(session, ObjectClass.SECRET_KEY, {Attribute.KEY_TYPE: kind, Attribute.LABEL: label})


def ambiguous() -> HsmError:
    return HsmError("several objects match; the token is inconsistent")


def private_key(shared: TokenSession, key_id: str) -> CachedKey:
    """Private key handle for ``key_id``, from the cache or found once on the token."""
    attrs = by_id(key_id)
    canonical = attrs[Attribute.ID].hex()
    cached: CachedKey | None = shared.private_keys.get(canonical)
    if cached is None:
        found = find_all(shared.session, ObjectClass.PRIVATE_KEY, attrs)
        if len(found) != 1:
            raise KeyNotFound("no private key with that key ID") if not found else ambiguous()
        cached = CachedKey(found[0], found[0].key_type)
        shared.private_keys[canonical] = cached
    return cached


def forget_private_key(shared: TokenSession, key_id: str) -> None:
    """Drop the cached handle of ``key_id`` (its object was destroyed, here or elsewhere)."""
    shared.private_keys.pop(by_id(key_id)[Attribute.ID].hex(), None)


def secret_key(shared: TokenSession, label: str, kind: KeyType = KeyType.AES) -> Any:
    """The secret key ``label`` (AES, or a generic secret for HMAC) from the cache or the token."""
    key = shared.secret_keys.get(label)
    if key is None:
        found = find_secret(shared.session, label, kind)
        if len(found) != 1:
            raise KeyNotFound("no secret key with that label") if not found else ambiguous()
        key = shared.secret_keys[label] = found[0]
    return key


def key_type_of(spec: KeySpec) -> KeyType:
    return KeyType.RSA if spec.kind == "rsa" else KeyType.EC


def generate_pair(session: Any, spec: KeySpec, raw_id: bytes, label: str,
                  *, wrappable: bool = False) -> tuple[Any, Any]:
    """C_GenerateKeyPair for RSA (e = 65537) or EC on a named curve, as token objects
    (``wrappable``: as session objects, the private key extractable only to be wrapped)."""
    public_template = wrapping.session_public_template() if wrappable else dict(_PUBLIC_TEMPLATE)
    private_template = wrapping.session_private_template(extractable=True) if wrappable else dict(_PRIVATE_TEMPLATE)
    if spec.kind == "rsa":
        if spec.bits < 2048:
            raise HsmError("RSA keys must have at least 2048 bits")
        public_template[Attribute.PUBLIC_EXPONENT] = b"\x01\x00\x01"
        key_type, bits = KeyType.RSA, spec.bits
    elif spec.kind == "ec" and spec.curve in _CURVES:
        public_template[Attribute.EC_PARAMS] = encode_named_curve_parameters(_CURVES[spec.curve])
        key_type, bits = KeyType.EC, None
    else:
        raise HsmError(f"unsupported key spec {spec!r}")
    public, private = session.generate_keypair(
        key_type,
        bits,
        id=raw_id,
        label=label,
        store=not wrappable,
        capabilities=MechanismFlag.SIGN | MechanismFlag.VERIFY,
        public_template=public_template,
        private_template=private_template,
    )
    return public, private


def generate_secret(session: Any, label: str, kind: KeyType) -> Any:
    """AES-256 for encryption, or a 256-bit generic secret that can only compute HMACs."""
    if kind == KeyType.AES:
        capabilities, template = MechanismFlag.ENCRYPT | MechanismFlag.DECRYPT, dict(_SECRET_TEMPLATE)
    else:
        capabilities = MechanismFlag.SIGN | MechanismFlag.VERIFY
        template = {**_SECRET_TEMPLATE, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                    Attribute.SIGN: True, Attribute.VERIFY: True}
    return session.generate_key(kind, 256, id=secrets.token_bytes(KEY_ID_BYTES), label=label, store=True,
                                capabilities=capabilities, template=template)
