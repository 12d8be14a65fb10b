"""The initial PIN an RA delivers to ``manages/linkEid``: in clear, or as an argon2id hash.

A delivered hash carries its own cost: every ``credentials/authorize`` verifies it with the
memory and passes written in it. An RA that chose 1 GiB and 4 passes made each authorization
of that credential take 1 GiB and seconds; one that chose 8 KiB and one pass made the PIN cheap
to guess from a copy of the database. So a hash is taken only if it is exactly what rssp's own
hasher (:mod:`rssp.auth.passwords`) writes: the same type, version, memory, passes and lanes,
written the same way, with a salt and a hash of the same lengths in canonical base64. The
refusal names these parameters, so an RA can read them from it.

The parameters are read from a hash the server makes itself (once per process, at the first
delivered hash), so they follow whatever the hasher is configured with.
"""

from __future__ import annotations

import base64
import binascii
from dataclasses import dataclass

from argon2 import extract_parameters

from rssp.auth.passwords import hash_secret
from rssp.errors import invalid_request

ARGON2_PREFIX = "$argon2id$"
MAX_LENGTH = 255  # the pin_hash column


@dataclass(frozen=True)
class _Reference:
    """How this server's hashes look: ``$argon2id$v=..$m=..,t=..,p=..$<salt>$<hash>``."""

    head: tuple[str, ...]  # the first four "$"-separated fields, exactly as the hasher writes them
    salt_len: int
    hash_len: int
    description: str


_reference: _Reference | None = None


def is_argon2(value: str) -> bool:
    """Whether the RA sent a hash (then :func:`check` decides if it is taken) rather than a PIN."""
    return value.startswith(ARGON2_PREFIX) and len(value) < MAX_LENGTH


async def _server_reference() -> _Reference:
    global _reference
    if _reference is None:
        sample = await hash_secret("rssp: the parameters of this server's argon2id hashes")
        p = extract_parameters(sample)
        _reference = _Reference(
            head=tuple(sample.split("$")[:4]), salt_len=p.salt_len, hash_len=p.hash_len,
            description=("A PIN hash must be argon2id with this server's parameters: "
                         f"v={p.version}, m={p.memory_cost}, t={p.time_cost}, p={p.parallelism}, "
                         f"salt {p.salt_len} bytes, hash {p.hash_len} bytes (or send the PIN itself)"))
    return _reference


def _decoded_len(text: str) -> int | None:
    """The length of unpadded canonical base64 ``text`` (argon2's encoding), None if it is not that."""
    try:
        raw = base64.b64decode(text + "=" * (-len(text) % 4), validate=True)
    except (binascii.Error, ValueError):
        return None
    return len(raw) if base64.b64encode(raw).decode().rstrip("=") == text else None


async def to_store(reference: str) -> str:
    """The hash ``linkEid`` stores for the RA's ``reference``: a PIN hashed here, or its checked hash."""
    if not is_argon2(reference):
        return await hash_secret(reference)
    await check(reference)
    return reference


async def check(pin_hash: str) -> None:
    """Refuse (400 ``invalid_request``, naming the parameters) a hash not made like the server's."""
    ref = await _server_reference()
    fields = pin_hash.split("$")
    if (len(fields) != 6 or tuple(fields[:4]) != ref.head or _decoded_len(fields[4]) != ref.salt_len
            or _decoded_len(fields[5]) != ref.hash_len):
        raise invalid_request(ref.description)
