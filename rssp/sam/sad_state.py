"""A level-3 SAD row's whole state, as the SAM MACs it (JT2A 3.2.1.2: SAD integrity).

The MAC (HMAC-SHA-256 by the HSM key ``rssp-sam-mac``) covers everything that decides what
the SAD may still sign: its digest, user, credential, hash algorithm, whether it is bound,
the remaining count, expiry, the transaction's end, the bound digests *and which are used*,
and the sealed KEK. Any edit of the row in the database (another hash, a higher count, a later
expiry, another credential or user, a used hash marked unused) no longer matches its MAC.
Every change the SAM makes writes the MAC of the new state with it.

The bound digests live in the row itself, sorted and concatenated (``digests``), with a bitmap
of the used ones (``used_map``): a spend reads one row and writes one row, whatever the number
of hashes. Floats are MACed as ``float.hex`` (exact); SQLite and PostgreSQL both store them as
doubles and give back the same value.
"""

from __future__ import annotations

import hashlib
import hmac
import json
from dataclasses import dataclass, replace

from sqlalchemy import exists, select
from sqlalchemy.engine import Connection

from rssp.algorithms import DIGEST_SIZES
from rssp.hsm import Hsm
from rssp.sam.samkeys import SAD_MAC_KEY
from rssp.store.schema import credentials, sads, tokens

_DOMAIN = "rssp level-3 SAD v1"


@dataclass(frozen=True)
class SadState:
    sad_hash: str
    user_id: str
    credential_id: str
    hash_algo: str | None
    remaining: int
    expires_at: float
    not_after: float | None
    digests: tuple[bytes, ...]  # sorted
    used: tuple[bool, ...]  # one per digest
    sealed_kek: bytes | None

    @property
    def bound(self) -> bool:
        return bool(self.digests)

    def message(self) -> bytes:
        fields = [
            _DOMAIN, self.sad_hash, self.user_id, self.credential_id, self.hash_algo, self.remaining,
            float(self.expires_at).hex(), None if self.not_after is None else float(self.not_after).hex(),
            hashlib.sha256(b"".join(self.digests)).hexdigest(), len(self.digests), self.used_map().hex(),
            hashlib.sha256(self.sealed_kek).hexdigest() if self.sealed_kek is not None else None,
        ]
        return json.dumps(fields, separators=(",", ":")).encode()

    def used_map(self) -> bytes:
        bits = bytearray((len(self.used) + 7) // 8)
        for i, used in enumerate(self.used):
            if used:
                bits[i // 8] |= 1 << (i % 8)
        return bytes(bits)

    @property
    def unused(self) -> tuple[bytes, ...]:
        return tuple(d for d, used in zip(self.digests, self.used) if not used)

    def spent(self, chosen: tuple[bytes, ...]) -> "SadState":
        """After signing ``chosen``: the count down by their number, each of them used."""
        marked = set(chosen)
        return replace(self, remaining=self.remaining - len(chosen),
                       used=tuple(u or d in marked for d, u in zip(self.digests, self.used)))

    def refunded(self, chosen: tuple[bytes, ...]) -> "SadState":
        """After giving ``chosen`` back (:meth:`spent` undone for them)."""
        marked = set(chosen)
        return replace(self, remaining=self.remaining + len(chosen),
                       used=tuple(u and d not in marked for d, u in zip(self.digests, self.used)))


def new_state(sad_hash: str, user_id: str, credential_id: str, count: int, hash_algo: str | None,
              digests: tuple[bytes, ...], expires_at: float, not_after: float | None,
              sealed_kek: bytes) -> SadState:
    ordered = tuple(sorted(digests))
    return SadState(sad_hash, user_id, credential_id, hash_algo, count, expires_at, not_after, ordered,
                    (False,) * len(ordered), sealed_kek)


def _split(blob: bytes | None, hash_algo: str | None, used_map: bytes | None) -> tuple[tuple[bytes, ...], tuple[bool, ...]]:
    """The digests and used flags stored in the row; a blob that does not parse gives none (the MAC
    of the real state then cannot match)."""
    size = DIGEST_SIZES.get(hash_algo or "", 0)  # type: ignore[call-overload]
    if not blob or not size or len(blob) % size:
        return (), ()
    digests = tuple(bytes(blob[i:i + size]) for i in range(0, len(blob), size))
    bits = bytes(used_map or b"").ljust((len(digests) + 7) // 8, b"\0")
    return digests, tuple(bool(bits[i // 8] >> (i % 8) & 1) for i in range(len(digests)))


@dataclass(frozen=True)
class StoredSad:
    """A SAD row as read: its state, its MAC, and what the spend checks beside it."""

    state: SadState
    mac: bytes | None
    credential_status: str | None
    is_token: bool  # the row is a credential-scoped OAuth token's grant


_READ = select(
    sads,
    select(credentials.c.status).where(credentials.c.id == sads.c.credential_id).scalar_subquery().label("status"),
    exists().where(tokens.c.token_hash == sads.c.sad_hash).label("is_token"),
)


def read_sad(sad_hash: str, conn: Connection) -> StoredSad | None:
    """The row keyed by ``sad_hash``, with its credential's status, in one statement."""
    row = conn.execute(_READ.where(sads.c.sad_hash == sad_hash)).first()
    if row is None:
        return None
    digests, used = _split(row.digests, row.hash_algo, row.used_map)
    state = SadState(
        sad_hash, row.user_id, row.credential_id, row.hash_algo, int(row.remaining), float(row.expires_at),
        None if row.not_after is None else float(row.not_after), digests, used,
        None if row.sealed_kek is None else bytes(row.sealed_kek),
    )
    return StoredSad(state, None if row.mac is None else bytes(row.mac), row.status, bool(row.is_token))


def state_columns(state: SadState, mac: bytes) -> dict[str, object]:
    """The level-3 columns that store ``state`` and its MAC."""
    return {"mac": mac, "sealed_kek": state.sealed_kek, "digests": b"".join(state.digests),
            "used_map": state.used_map()}


async def mac_states(hsm: Hsm, states: list[SadState]) -> list[bytes]:
    """The MAC of each state, in one HSM hop."""
    return await hsm.mac_many(SAD_MAC_KEY, [s.message() for s in states])


def mac_matches(stored: bytes | None, computed: bytes) -> bool:
    return stored is not None and hmac.compare_digest(stored, computed)
