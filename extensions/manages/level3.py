"""Level-3 keys enrolled by a CA's RA: wrapped from birth, under the signer's PIN from linkEid.

``generateKey`` comes before the signer's PIN is known, so the key pair is generated as session
objects and wrapped at once under a key of its own in the HSM, the credential's *enrollment
key* (``rssp-enroll-<credentialID>``, AES, can only wrap/unwrap). ``authorize`` unwraps it
into a session object for the CSR and destroys that object. ``linkEid`` takes the PIN itself
(a level-3 key is wrapped under a key derived from it, so an argon2 hash will not do),
re-wraps the key under the PIN-derived KEK and destroys the enrollment key: from then on only
the signer's PIN opens it. So for level 3 the order is generateKey → authorize → linkEid →
linkCert (docs/level3.md, docs/manages.md).
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager, suppress

from rssp.credentials.model import Credential
from rssp.errors import invalid_request
from rssp.hsm import Hsm, KeyNotFound
from rssp.hsm.types import GeneratedKey, KeySpec
from rssp.sam.kek import new_kek, pin_problem
from rssp.x509.builder import SigningKeyRef, hsm_signing_key

from extensions.manages import pinhash
from extensions.manages.linkcheck import BAD_STATE

AUTHORIZE_FIRST = "For a level-3 key, manages/authorize must come before manages/linkEid"
PIN_ITSELF = "A level-3 PIN must be sent itself, not hashed: the key is wrapped under a key derived from it"


def enrollment_key(credential_id: str) -> str:
    return f"rssp-enroll-{credential_id}"


async def generate(hsm: Hsm, spec: KeySpec, credential_id: str) -> tuple[GeneratedKey, bytes]:
    """A new key pair and its private key wrapped under a fresh enrollment key (nothing else kept)."""
    label = enrollment_key(credential_id)
    key = await hsm.generate_wrappable_key_pair(spec, label=f"cred-{credential_id}")
    try:
        await hsm.ensure_wrap_key(label)
        return key, await hsm.wrap_key(key.key_id, label)
    except BaseException:
        await discard(hsm, credential_id, key.key_id)
        raise


async def discard(hsm: Hsm, credential_id: str, key_id: str | None = None) -> None:
    """Destroy what the token may still hold of the credential's key (idempotent)."""
    for destroy, name in ((hsm.destroy_key, key_id), (hsm.destroy_secret_key, enrollment_key(credential_id))):
        if name is not None:
            with suppress(KeyNotFound):
                await destroy(name)


def check_pin(pin: str) -> None:
    """A level-3 linkEid needs the PIN itself, and a PIN that meets the level-3 policy."""
    if pinhash.is_argon2(pin):
        raise invalid_request(PIN_ITSELF)
    problem = pin_problem(pin)
    if problem:
        raise invalid_request(problem[0].upper() + problem[1:])


async def rewrap_for_pin(hsm: Hsm, cred: Credential, pin: str) -> tuple[str, bytes]:
    """The PIN record and the key re-wrapped from the enrollment key to the PIN's KEK."""
    if cred.wrapped_key is None:
        raise invalid_request(AUTHORIZE_FIRST)
    kek, record = await new_kek(hsm, cred.id, pin)
    try:
        blob = await hsm.rewrap_key(cred.wrapped_key, cred.key_kind, enrollment_key(cred.id), kek)
    except KeyNotFound:  # the enrollment key is gone: the factors were linked already
        raise invalid_request(AUTHORIZE_FIRST) from None
    return record, blob


@asynccontextmanager
async def csr_key(hsm: Hsm, cred: Credential) -> AsyncIterator[SigningKeyRef]:
    """The key, unwrapped with its enrollment key into a session object for the CSR only."""
    if cred.wrapped_key is None or cred.pin_hash is not None:  # linked: the CSR was given already
        raise invalid_request(BAD_STATE)
    try:
        key_id = await hsm.unwrap_key(cred.wrapped_key, cred.key_kind, enrollment_key(cred.id))
    except KeyNotFound:
        raise invalid_request(AUTHORIZE_FIRST) from None
    try:
        yield hsm_signing_key(hsm, key_id, cred.public_key)
    finally:
        await hsm.destroy_key(key_id)
