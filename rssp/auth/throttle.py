"""Password-login throttling per username and per client address (DESIGN §6).

Credential factors already lock after five failures; the service password had no limit, so a
client could guess passwords as fast as argon2 lets it. Failures are counted in the database
(every worker process sees the same counts) under two keys: the username as typed, and the
client's IP address. Past a threshold, further attempts are refused for a delay that doubles
with each failure, up to a ceiling, without checking the password at all (no argon2 work is
spent on a blocked key).

Unknown usernames are counted exactly like real ones, so the refusal does not reveal whether
an account exists. A success clears its username's count, never the address's: otherwise one
valid account would let an attacker reset the count for the address it guesses from. Counts
that saw no failure for ``window`` seconds start over.

Keys are stored as SHA-256 digests: the table needs equality only, and a username typed into
the password field by mistake must not be kept in clear.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import case, select
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from rssp.auth.secrets import digest
from rssp.store import Store
from rssp.store.schema import login_throttle


@dataclass(frozen=True)
class ThrottlePolicy:
    user_failures: int = 5  # failures of one username before attempts are refused
    address_failures: int = 100  # failures from one client address before its attempts are refused
    block_seconds: float = 60.0  # first delay past the threshold; doubles with each failure
    max_block_seconds: float = 900.0
    window_seconds: float = 900.0  # counts idle this long start over


class LoginThrottled(Exception):
    """Attempts for this username or from this address are refused for now."""

    def __init__(self, retry_after: int) -> None:
        super().__init__("login attempts throttled")
        self.retry_after = retry_after


def _keys(username: str, address: str | None) -> list[tuple[str, str]]:
    keys = [("user", digest("user:" + username))]
    if address:
        keys.append(("address", digest("address:" + address)))
    return keys


class LoginThrottle:
    def __init__(self, store: Store, policy: ThrottlePolicy) -> None:
        self.store = store
        self.policy = policy

    def _threshold(self, kind: str) -> int:
        return self.policy.user_failures if kind == "user" else self.policy.address_failures

    def _blocked_until(self, kind: str, failures: int, last_failure: float) -> float:
        over = failures - self._threshold(kind)
        if over < 0:
            return 0.0
        delay = min(self.policy.block_seconds * 2 ** min(over, 30), self.policy.max_block_seconds)
        return last_failure + delay

    async def check(self, username: str, address: str | None) -> None:
        """Raise :class:`LoginThrottled` if either key is blocked now."""
        keys = _keys(username, address)

        def read(conn: Connection) -> list[tuple[str, int, float]]:
            rows = conn.execute(
                select(login_throttle).where(login_throttle.c.key.in_([k for _, k in keys]))
            ).all()
            kinds = dict((k, kind) for kind, k in keys)
            return [(kinds[r.key], r.failures, r.last_failure) for r in rows]

        now = time.time()
        until = max((self._blocked_until(kind, n, last) for kind, n, last in await self.store.query(read)),
                    default=0.0)
        if until > now:
            raise LoginThrottled(max(1, int(until - now + 0.999)))

    async def failed(self, username: str, address: str | None) -> None:
        """Count one failed attempt under both keys."""
        keys = _keys(username, address)
        window = self.policy.window_seconds

        def write(conn: Connection) -> None:
            now = time.time()
            for _kind, key in keys:
                conn.execute(_upsert_failure(conn, key, now, window))

        await self.store.transaction(write)

    async def succeeded(self, username: str) -> None:
        key = digest("user:" + username)
        await self.store.transaction(lambda conn: conn.execute(
            login_throttle.delete().where(login_throttle.c.key == key)))


def _upsert_failure(conn: Connection, key: str, now: float, window: float):  # type: ignore[no-untyped-def]
    """One statement, so two processes counting the same key at once cannot collide."""
    insert = (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(login_throttle)
    stmt = insert.values(key=key, failures=1, last_failure=now)
    return stmt.on_conflict_do_update(
        index_elements=[login_throttle.c.key],
        set_={
            "failures": case((login_throttle.c.last_failure < now - window, 1), else_=login_throttle.c.failures + 1),
            "last_failure": now,
        },
    )
