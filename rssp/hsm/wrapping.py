"""Private keys kept outside the token, wrapped: the HSM-thread side of level-3 keys.

A level-3 signing key must not be usable by whoever holds the HSM PIN and a copy of the
database (see ``docs/level3.md``). So its key pair is generated as *session* objects
(CKA_TOKEN false: they vanish with the process), the private key marked sensitive and
extractable only so that it can be wrapped, and wrapped at once with CKM_AES_KEY_WRAP_PAD
(RFC 5649; SoftHSM2 2.6.1 has it) under a key-encryption key (KEK) the caller supplies:

- ``bytes``: a raw AES-256 KEK the caller derived from the signer's factor; it is imported as a
  session key that can only wrap/unwrap, used once and destroyed;
- ``str``: the label of an AES token key (a credential's enrollment key, before its signer's
  PIN is known: ``manages/generateKey`` → ``manages/linkEid``).

To sign, the blob is unwrapped into a sensitive, non-extractable session object, used for the
batch and destroyed before the call returns: the token never holds the key persistently,
and nothing outlives the request. Every function here runs on the HSM thread only.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from pkcs11 import Attribute, KeyType, Mechanism, MechanismFlag, ObjectClass
from pkcs11 import exceptions as p11e
from pkcs11.constants import DEFAULT

from .types import HsmError

WRAP_MECHANISM = Mechanism.AES_KEY_WRAP_PAD
KEK_BYTES = 32
Wrapping = bytes | str  # a raw KEK, or the label of an AES token key

# python-pkcs11 puts every capability attribute in an unwrap template; a private key object
# has no CKA_ENCRYPT/VERIFY/WRAP (SoftHSM2 answers CKR_ATTRIBUTE_TYPE_INVALID), so drop them.
_NOT_ON_PRIVATE = {Attribute.ENCRYPT: DEFAULT, Attribute.VERIFY: DEFAULT, Attribute.WRAP: DEFAULT}
_UNWRAP_FAILURES = (p11e.GeneralError, p11e.FunctionFailed, p11e.EncryptedDataInvalid,
                    p11e.WrappedKeyInvalid, p11e.WrappedKeyLenRange, p11e.TemplateInconsistent,
                    p11e.AttributeValueInvalid)


def key_type(kind: str) -> KeyType:
    """The PKCS#11 key type of a credential's ``key_kind`` (``rsa`` or ``ec``)."""
    if kind == "rsa":
        return KeyType.RSA
    if kind == "ec":
        return KeyType.EC
    raise HsmError(f"unsupported key kind {kind!r}")


def session_private_template(*, extractable: bool) -> dict[Attribute, Any]:
    """A private key that lives only in this process's session and can only sign."""
    return {Attribute.TOKEN: False, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
            Attribute.EXTRACTABLE: extractable, Attribute.SIGN: True}


def session_public_template() -> dict[Attribute, Any]:
    return {Attribute.TOKEN: False, Attribute.PRIVATE: False, Attribute.VERIFY: True}


def _import_kek(session: Any, kek: bytes) -> Any:
    """The raw KEK as a session AES key that can wrap and unwrap, and nothing else."""
    if len(kek) != KEK_BYTES:
        raise HsmError("a key-encryption key must be 256 bits")
    return session.create_object({
        Attribute.CLASS: ObjectClass.SECRET_KEY, Attribute.KEY_TYPE: KeyType.AES, Attribute.VALUE: bytes(kek),
        Attribute.TOKEN: False, Attribute.PRIVATE: True, Attribute.SENSITIVE: True, Attribute.EXTRACTABLE: False,
        Attribute.WRAP: True, Attribute.UNWRAP: True, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
        Attribute.SIGN: False, Attribute.VERIFY: False,
    })


@contextmanager
def wrapping_key(session: Any, wrapping: Wrapping, token_key: Callable[[str], Any]) -> Iterator[Any]:
    """The key to wrap/unwrap with; an imported raw KEK is destroyed on the way out."""
    if isinstance(wrapping, str):
        yield token_key(wrapping)
        return
    imported = _import_kek(session, wrapping)
    try:
        yield imported
    finally:
        imported.destroy()


def wrap(kek: Any, private: Any) -> bytes:
    return bytes(kek.wrap_key(private, mechanism=WRAP_MECHANISM))


def unwrap(kek: Any, blob: bytes, kind: KeyType, *, extractable: bool = False, raw_id: bytes | None = None) -> Any:
    """A session private key from ``blob``; a wrong KEK or a damaged blob is :class:`HsmError`."""
    template = {**_NOT_ON_PRIVATE, **session_private_template(extractable=extractable)}
    try:
        return kek.unwrap_key(ObjectClass.PRIVATE_KEY, kind, bytes(blob), id=raw_id or secrets.token_bytes(16),
                              mechanism=WRAP_MECHANISM, store=False, capabilities=MechanismFlag.SIGN,
                              template=template)
    except _UNWRAP_FAILURES:
        raise HsmError("unwrapping failed: wrong key-encryption key or damaged key blob") from None


def generate_token_wrap_key(session: Any, label: str) -> Any:
    """An AES-256 token key that can only wrap and unwrap (a credential's enrollment key)."""
    return session.generate_key(
        KeyType.AES, 256, id=secrets.token_bytes(16), label=label, store=True,
        capabilities=MechanismFlag.WRAP | MechanismFlag.UNWRAP,
        template={Attribute.TOKEN: True, Attribute.PRIVATE: True, Attribute.SENSITIVE: True,
                  Attribute.EXTRACTABLE: False, Attribute.ENCRYPT: False, Attribute.DECRYPT: False,
                  Attribute.WRAP: True, Attribute.UNWRAP: True},
    )
