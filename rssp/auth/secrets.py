"""Random values and their stored form.

Tokens and SADs are 256-bit random strings handed to the client once; the database keeps only
their SHA-256, so a dump of it authorizes nothing. Lookups are by that digest (an index hit, not
a comparison loop), and the digest of a guess reveals nothing about stored values.
"""

from __future__ import annotations

import hashlib
import secrets


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def new_id(nbytes: int = 16) -> str:
    return secrets.token_hex(nbytes)


def digest(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8")).hexdigest()
