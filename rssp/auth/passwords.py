"""argon2id hashing for user passwords and credential PINs, run off the event loop.

argon2 deliberately costs about 0.14 s of CPU and 64 MiB at the default cost, which
``[security]`` sets for new hashes (:mod:`rssp.auth.argon2_cost`; a hash is checked with the
parameters it was made with). It runs on two small pools
of its own, never on the default executor:

- ``rssp-argon2-login``: checks for callers not yet authenticated (``auth/login``, the OAuth
  login page). Anyone can send those, so they get one thread per process, behind the
  admission gate of :mod:`rssp.auth.admission`: a burst of logins queues here, bounded, and
  takes at most one core.
- ``rssp-argon2``: work for callers already authenticated (a signer's PIN at
  ``credentials/authorize``) and for operators. A flood of anonymous logins never delays a
  signer's authorization behind it (#20: twelve login clients made one signature take 2-3 s).
"""

from __future__ import annotations

import asyncio
from concurrent.futures import ThreadPoolExecutor
from functools import cache

from argon2 import PasswordHasher
from argon2.exceptions import InvalidHashError, VerificationError

from rssp.auth.argon2_cost import Argon2Cost, password_cost
from rssp.threads import named_pool

_signer_pool = named_pool("rssp-argon2", 1)
_login_pool = named_pool("rssp-argon2-login", 1)


@cache
def _hasher(cost: Argon2Cost) -> PasswordHasher:
    return PasswordHasher(time_cost=cost.passes, memory_cost=cost.memory_kib, parallelism=cost.lanes)


@cache
def _dummy(cost: Argon2Cost) -> str:
    """A hash of the configured cost to check when there is none: made once, when first needed."""
    return _hasher(cost).hash("rssp-dummy-secret")


def hash_secret_sync(secret: str) -> str:
    return _hasher(password_cost()).hash(secret)


async def hash_secret(secret: str) -> str:
    return await asyncio.get_running_loop().run_in_executor(_signer_pool, hash_secret_sync, secret)


def _verify(stored: str | None, candidate: str) -> bool:
    """Whether ``candidate`` matches ``stored`` (checked with the parameters ``stored`` names)."""
    cost = password_cost()
    try:
        return _hasher(cost).verify(stored or _dummy(cost), candidate) and stored is not None
    except (VerificationError, InvalidHashError):
        return False


async def _verify_on(pool: ThreadPoolExecutor, stored: str | None, candidate: str) -> bool:
    """Constant work: a missing stored hash still burns a verification."""
    return await asyncio.get_running_loop().run_in_executor(pool, _verify, stored, candidate)


async def verify_secret(stored: str | None, candidate: str) -> bool:
    """Check an authenticated caller's secret (a signer's PIN)."""
    return await _verify_on(_signer_pool, stored, candidate)


async def verify_login_secret(stored: str | None, candidate: str) -> bool:
    """Check the secret of a caller not yet authenticated; run it behind the admission gate."""
    return await _verify_on(_login_pool, stored, candidate)

