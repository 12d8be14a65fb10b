"""argon2id hashing for user passwords and credential PINs, run off the event loop.

argon2 deliberately costs tens of milliseconds; running it in a worker thread keeps other
requests flowing while one login or authorization is being checked.
"""

from __future__ import annotations

import asyncio

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

_hasher = PasswordHasher()  # argon2id, library defaults (RFC 9106 low-memory profile)


def hash_secret_sync(secret: str) -> str:
    return _hasher.hash(secret)


async def hash_secret(secret: str) -> str:
    return await asyncio.to_thread(_hasher.hash, secret)


def _verify(stored: str, candidate: str) -> bool:
    try:
        return _hasher.verify(stored, candidate)
    except (VerificationError, InvalidHashError):
        return False


async def verify_secret(stored: str | None, candidate: str) -> bool:
    """Constant-work check; a missing stored hash still burns a verification."""
    if stored is None:
        await asyncio.to_thread(_verify, _DUMMY, candidate)
        return False
    return await asyncio.to_thread(_verify, stored, candidate)


_DUMMY = _hasher.hash("rssp-dummy-secret")
