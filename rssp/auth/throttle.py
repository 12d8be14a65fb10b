"""Login throttling per name and per client address (DESIGN §6).

Credential factors already lock after five failures; service passwords and management client
secrets are throttled here. Attempts are counted in the database (every worker process and
host sees the same counts) under two keys: the name as typed (a username, a management
client ID) and the client's IP address. Past a threshold, further attempts are refused for a
delay that doubles with each failure, up to a ceiling, without checking the secret at all.

Every attempt is counted *before* its secret is checked, in one write transaction that also
decides whether it may go ahead (#20: counted after the check, 50 concurrent guesses were all
evaluated and the right password got in as the 11th with a limit of 5). A success then takes
its own attempt back: it clears its name's count and removes one from its address's, never
more, so one valid account cannot reset the count of the address it guesses from.

Unknown names are counted exactly like real ones, so the refusal does not reveal whether an
account exists. Counts that saw no attempt for ``window`` seconds start over. Keys are stored
keyed-hashed with the instance's audit key (:func:`rssp.audit.typed_actor`): the table needs
equality only, and a password typed into the user field by mistake must be neither kept in
clear nor recoverable by a dictionary over the table.
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import case, select, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.engine import Connection

from rssp.audit import typed_name_actor
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
    """Attempts for this name or from this address are refused for now."""

    description = "Too many failed login attempts; try again later"

    def __init__(self, retry_after: int) -> None:
        super().__init__("login attempts throttled")
        self.retry_after = retry_after


class LoginThrottle:
    def __init__(self, store: Store, policy: ThrottlePolicy, directory: Path) -> None:
        self.store = store
        self.policy = policy
        self.directory = directory  # where the instance's audit key is

    async def _keys(self, kind: str, name: str, address: str | None) -> list[tuple[str, str]]:
        keys = [(kind, await typed_name_actor(self.directory, f"{kind}:{name}"))]
        if address:
            keys.append(("address", await typed_name_actor(self.directory, "address:" + address)))
        return keys

    def _threshold(self, kind: str) -> int:
        return self.policy.address_failures if kind == "address" else self.policy.user_failures

    def _blocked_until(self, kind: str, failures: int, last_failure: float) -> float:
        over = failures - self._threshold(kind)
        if over < 0:
            return 0.0
        delay = min(self.policy.block_seconds * 2 ** min(over, 30), self.policy.max_block_seconds)
        return float(last_failure + delay)

    async def begin(self, kind: str, name: str, address: str | None) -> None:
        """Count one attempt under the name's and the address's keys, or raise :class:`LoginThrottled`.

        Decided and counted in one write transaction (rows locked on PostgreSQL, the database
        write lock on SQLite), so concurrent attempts in any process see each other's counts.
        A refused attempt counts nothing.
        """
        keys = await self._keys(kind, name, address)
        retry_after = await self.store.transaction(lambda conn: self._count(conn, keys, time.time()))
        if retry_after:
            raise LoginThrottled(retry_after)

    def _count(self, conn: Connection, keys: list[tuple[str, str]], now: float) -> int:
        """Count the attempt and return 0, or return the seconds to wait and count nothing."""
        digests = [key for _kind, key in keys]
        conn.execute(_insert(conn).values([{"key": k, "failures": 0, "last_failure": now} for k in digests])
                     .on_conflict_do_nothing(index_elements=[login_throttle.c.key]))
        rows = conn.execute(
            select(login_throttle).where(login_throttle.c.key.in_(digests))
            .order_by(login_throttle.c.key).with_for_update()  # one lock order: no deadlock between attempts
        ).all()
        kinds = {key: kind for kind, key in keys}
        window = self.policy.window_seconds
        until = max((self._blocked_until(kinds[r.key], r.failures, r.last_failure) for r in rows
                     if r.last_failure >= now - window), default=0.0)
        if until > now:
            return max(1, int(until - now + 0.999))
        conn.execute(
            update(login_throttle).where(login_throttle.c.key.in_(digests)).values(
                failures=case((login_throttle.c.last_failure < now - window, 1), else_=login_throttle.c.failures + 1),
                last_failure=now,
            )
        )
        return 0

    async def succeeded(self, kind: str, name: str, address: str | None) -> None:
        """Take a successful attempt back: clear the name's count, remove one from the address's."""
        (_kind, name_key), *address_keys = await self._keys(kind, name, address)

        def write(conn: Connection) -> None:
            conn.execute(login_throttle.delete().where(login_throttle.c.key == name_key))
            for _k, key in address_keys:
                conn.execute(update(login_throttle).where(login_throttle.c.key == key, login_throttle.c.failures > 0)
                             .values(failures=login_throttle.c.failures - 1))

        await self.store.transaction(write)


def _insert(conn: Connection) -> Any:
    return (postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert)(login_throttle)
