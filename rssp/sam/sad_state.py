"""A level-3 SAD row's whole state, as the SAM MACs it (JT2A 3.2.1.2: SAD integrity).

The MAC (HMAC-SHA-256 by the HSM key ``rssp-sam-mac``) covers everything that decides what
the SAD may still sign: its digest, user, credential, hash algorithm, whether it is bound,
the remaining count, expiry, the transaction's end, the bound digests *and which are used*,
and the sealed KEK. Any edit of the row in the database (another hash, a higher count, a later
expiry, another credential or user, a used hash marked unused) no longer matches its MAC.
Every change the SAM makes writes the MAC of the new state with it.

The bound digests live in the row itself, sorted and concatenated (``digests``), with a bitmap
of the used ones (``used_map``): a spend reads one row and writes one row, and finds its digests
by binary search, whatever the number of hashes bound. Floats are MACed as ``float.hex``
(exact); SQLite and PostgreSQL both store them as doubles and give back the same value.
"""

from __future__ import annotations

import bisect
import hashlib
import hmac
import json
from dataclasses import dataclass, replace
from functools import cached_property

from sqlalchemy import exists, select
from sqlalchemy.engine import Connection

from rssp.algorithms import DIGEST_SIZES
from rssp.hsm import Hsm
from rssp.sam.samkeys import SAD_MAC_KEY
from rssp.store.schema import credentials, sads, tokens

_DOMAIN = "rssp level-3 SAD v1"


class _Sorted:
    """The fixed-size digests of a sorted blob, as a sequence for :mod:`bisect` (no list is built)."""

    def __init__(self, blob: bytes, size: int) -> None:
        self.blob, self.size = blob, size

    def __len__(self) -> int:
        return len(self.blob) // self.size if self.size else 0

    def __getitem__(self, i: int) -> bytes:
        return self.blob[i * self.size:(i + 1) * self.size]


@dataclass(frozen=True)
class SadState:
    sad_hash: str
    user_id: str
    credential_id: str
    hash_algo: str | None
    remaining: int
    expires_at: float
    not_after: float | None
    digests: bytes  # the bound digests, sorted and concatenated
    used: int  # bit i set: digest i is used
    sealed_kek: bytes | None

    @cached_property
    def _sorted(self) -> _Sorted:
        return _Sorted(self.digests, DIGEST_SIZES.get(self.hash_algo or "", 0))  # type: ignore[call-overload]

    @property
    def bound(self) -> bool:
        return bool(self.digests)

    @cached_property
    def message(self) -> bytes:
        """What the MAC covers: the whole state, canonical JSON."""
        fields = [
            _DOMAIN, self.sad_hash, self.user_id, self.credential_id, self.hash_algo, self.remaining,
            float(self.expires_at).hex(), None if self.not_after is None else float(self.not_after).hex(),
            hashlib.sha256(self.digests).hexdigest(), len(self.digests), self.used_map().hex(),
            hashlib.sha256(self.sealed_kek).hexdigest() if self.sealed_kek is not None else None,
        ]
        return json.dumps(fields, separators=(",", ":")).encode()

    def used_map(self) -> bytes:
        """The bitmap as stored; bits past the last digest (an edit) make it longer, and the MAC differ."""
        return self.used.to_bytes(max(len(self._sorted) + 7, self.used.bit_length() + 7) // 8, "little")

    def _position(self, d: bytes) -> int | None:
        seq = self._sorted
        i = bisect.bisect_left(seq, d)
        return i if i < len(seq) and seq[i] == d else None

    def all_unused(self, chosen: tuple[bytes, ...]) -> bool:
        """Whether every digest of ``chosen`` is bound to the SAD and not used yet."""
        for d in chosen:
            i = self._position(d)
            if i is None or self.used >> i & 1:
                return False
        return True

    @property
    def unused(self) -> tuple[bytes, ...]:
        seq = self._sorted
        return tuple(seq[i] for i in range(len(seq)) if not self.used >> i & 1)

    def _bits(self, chosen: tuple[bytes, ...]) -> int:
        return sum(1 << i for i in {self._position(d) for d in chosen} if i is not None)

    def spent(self, chosen: tuple[bytes, ...]) -> SadState:
        """After signing ``chosen``: the count down by their number, each of them used."""
        return replace(self, remaining=self.remaining - len(chosen), used=self.used | self._bits(chosen))

    def refunded(self, chosen: tuple[bytes, ...]) -> SadState:
        """After giving ``chosen`` back (:meth:`spent` undone for them)."""
        return replace(self, remaining=self.remaining + len(chosen), used=self.used & ~self._bits(chosen))


def new_state(sad_hash: str, user_id: str, credential_id: str, count: int, hash_algo: str | None,
              digests: tuple[bytes, ...], expires_at: float, not_after: float | None,
              sealed_kek: bytes) -> SadState:
    return SadState(sad_hash, user_id, credential_id, hash_algo, count, expires_at, not_after,
                    b"".join(sorted(digests)), 0, sealed_kek)


@dataclass(frozen=True)
class StoredSad:
    """A SAD row as read: its state, its MAC, and what the spend checks beside it."""

    state: SadState
    mac: bytes | None
    credential_status: str | None
    is_token: bool  # the row is a credential-scoped OAuth token's grant
    wrapped_key: bytes | None = None  # level 3: the credential's key as stored now (a PIN change re-wraps it)


_READ = select(
    sads,
    select(credentials.c.status).where(credentials.c.id == sads.c.credential_id).scalar_subquery().label("status"),
    select(credentials.c.wrapped_key).where(credentials.c.id == sads.c.credential_id).scalar_subquery()
    .label("wrapped_key"),
    exists().where(tokens.c.token_hash == sads.c.sad_hash).label("is_token"),
)


def read_sad(sad_hash: str, conn: Connection) -> StoredSad | None:
    """The row keyed by ``sad_hash``, with its credential's status, in one statement."""
    row = conn.execute(_READ.where(sads.c.sad_hash == sad_hash)).first()
    if row is None:
        return None
    state = SadState(
        sad_hash, row.user_id, row.credential_id, row.hash_algo, int(row.remaining), float(row.expires_at),
        None if row.not_after is None else float(row.not_after), bytes(row.digests or b""),
        int.from_bytes(bytes(row.used_map or b""), "little"), None if row.sealed_kek is None else bytes(row.sealed_kek),
    )
    return StoredSad(state, None if row.mac is None else bytes(row.mac), row.status, bool(row.is_token),
                     None if row.wrapped_key is None else bytes(row.wrapped_key))


def state_columns(state: SadState, mac: bytes) -> dict[str, object]:
    """The level-3 columns that store ``state`` and its MAC."""
    return {"mac": mac, "sealed_kek": state.sealed_kek, "digests": state.digests, "used_map": state.used_map()}


async def mac_states(hsm: Hsm, states: list[SadState]) -> list[bytes]:
    """The MAC of each state, in one HSM hop."""
    return await hsm.mac_many(SAD_MAC_KEY, [s.message for s in states])


def mac_matches(stored: bytes | None, computed: bytes) -> bool:
    return stored is not None and hmac.compare_digest(stored, computed)
