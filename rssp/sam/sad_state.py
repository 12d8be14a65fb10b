"""A level-3 SAD row's whole state, as the SAM MACs it (JT2A 3.2.1.2: SAD integrity).

The MAC (HMAC-SHA-256 by the HSM key ``rssp-sam-mac``) covers everything that decides what
the SAD may still sign: its digest, user, credential, hash algorithm, whether it is bound,
the remaining count, expiry, the transaction's end, every bound hash *with its used flag*, and
the sealed KEK. Any edit of the row or of its hashes in the database (another hash, a higher
count, a later expiry, another credential or user, a used hash marked unused) no longer
matches its MAC. Every change the SAM makes writes the MAC of the new state with it.

Floats are MACed as ``float.hex`` (exact); SQLite and PostgreSQL both store them as doubles and
give back the same value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, replace

from sqlalchemy import select
from sqlalchemy.engine import Connection

from rssp.hsm import Hsm
from rssp.sam.samkeys import SAD_MAC_KEY
from rssp.store.schema import credentials, sad_hashes, sads, tokens

_DOMAIN = "rssp level-3 SAD v1"


@dataclass(frozen=True)
class SadState:
    sad_hash: str
    user_id: str
    credential_id: str
    hash_algo: str | None
    bound: bool
    remaining: int
    expires_at: float
    not_after: float | None
    hashes: tuple[tuple[bytes, bool], ...]  # (digest, used), sorted by digest
    sealed_kek: bytes | None

    def message(self) -> bytes:
        fields = [
            _DOMAIN, self.sad_hash, self.user_id, self.credential_id, self.hash_algo, self.bound, self.remaining,
            float(self.expires_at).hex(), None if self.not_after is None else float(self.not_after).hex(),
            [[d.hex(), used] for d, used in self.hashes],
            hashlib.sha256(self.sealed_kek).hexdigest() if self.sealed_kek is not None else None,
        ]
        return json.dumps(fields, separators=(",", ":")).encode()

    @property
    def unused(self) -> tuple[bytes, ...]:
        return tuple(d for d, used in self.hashes if not used)

    def spent(self, digests: tuple[bytes, ...]) -> "SadState":
        """After signing ``digests``: the count down by their number, each of them used."""
        chosen = set(digests)
        return replace(self, remaining=self.remaining - len(digests),
                       hashes=tuple((d, used or d in chosen) for d, used in self.hashes))

    def refunded(self, digests: tuple[bytes, ...]) -> "SadState":
        """After giving ``digests`` back (:func:`spent` undone for them)."""
        chosen = set(digests)
        return replace(self, remaining=self.remaining + len(digests),
                       hashes=tuple((d, used and d not in chosen) for d, used in self.hashes))


def new_state(sad_hash: str, user_id: str, credential_id: str, count: int, hash_algo: str | None,
              digests: tuple[bytes, ...], expires_at: float, not_after: float | None,
              sealed_kek: bytes) -> SadState:
    return SadState(sad_hash, user_id, credential_id, hash_algo, bool(digests), count, expires_at, not_after,
                    tuple(sorted((d, False) for d in digests)), sealed_kek)


@dataclass(frozen=True)
class StoredSad:
    """A SAD row as read: its state, its MAC, and what the spend checks beside it."""

    state: SadState
    mac: bytes | None
    credential_status: str | None
    is_token: bool  # the row is a credential-scoped OAuth token's grant


def read_sad(sad_hash: str, conn: Connection) -> StoredSad | None:
    """The row keyed by ``sad_hash`` with its hashes, in the caller's transaction."""
    row = conn.execute(select(sads).where(sads.c.sad_hash == sad_hash)).first()
    if row is None:
        return None
    hashes = conn.execute(select(sad_hashes.c.digest, sad_hashes.c.used)
                          .where(sad_hashes.c.sad_hash == sad_hash)).all()
    status = conn.execute(select(credentials.c.status).where(credentials.c.id == row.credential_id)).scalar()
    is_token = conn.execute(select(tokens.c.token_hash).where(tokens.c.token_hash == sad_hash)).first() is not None
    state = SadState(
        sad_hash, row.user_id, row.credential_id, row.hash_algo, bool(row.bound), int(row.remaining),
        float(row.expires_at), None if row.not_after is None else float(row.not_after),
        tuple(sorted((bytes(d), bool(used)) for d, used in hashes)),
        None if row.sealed_kek is None else bytes(row.sealed_kek),
    )
    return StoredSad(state, None if row.mac is None else bytes(row.mac), status, is_token)


async def mac_states(hsm: Hsm, states: list[SadState]) -> list[bytes]:
    """The MAC of each state, in one HSM hop."""
    return await hsm.mac_many(SAD_MAC_KEY, [s.message() for s in states])


def mac_matches(stored: bytes | None, computed: bytes) -> bool:
    return stored is not None and hmac.compare_digest(stored, computed)
