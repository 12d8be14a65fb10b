"""Single-use ceremony state in the database: WebAuthn challenges, OpenID Connect attempts and results.

A state is found by the SHA-256 of its purpose and a name the browser or session holds (a
random value, or the consent session's key), so any server process can finish a ceremony
another began, and a database copy gives nothing to present. :func:`take` deletes the row in
the statement that reads it: of two requests presenting the same challenge or ``state``, one
gets it. Rows live at most their ``ttl``; each new state sweeps expired ones.
"""

from __future__ import annotations

import json
import time
from typing import Any

from sqlalchemy import delete, select

from rssp.auth.secrets import digest
from rssp.store import Store
from rssp.store.schema_factors import factor_states


def _key(purpose: str, name: str) -> str:
    return digest(f"{purpose}:{name}")


async def put(store: Store, purpose: str, name: str, data: dict[str, Any], ttl: float) -> None:
    """Store (or replace) the state ``name`` of ``purpose`` for ``ttl`` seconds."""
    now, key = time.time(), _key(purpose, name)
    async with store.write() as conn:
        await conn.execute(delete(factor_states).where(
            (factor_states.c.key == key) | (factor_states.c.expires_at < now)))
        await conn.execute(factor_states.insert().values(key=key, purpose=purpose, data=json.dumps(data),
                                                         expires_at=now + ttl))


async def take(store: Store, purpose: str, name: str) -> dict[str, Any] | None:
    """The live state, deleted as it is read (single use); None if absent, taken or expired."""
    async with store.write() as conn:
        row = (await conn.execute(delete(factor_states).where(factor_states.c.key == _key(purpose, name))
                                  .returning(factor_states.c.data, factor_states.c.expires_at))).first()
    if row is None or row.expires_at <= time.time():
        return None
    return json.loads(row.data)  # type: ignore[no-any-return]


async def peek(store: Store, purpose: str, name: str) -> dict[str, Any] | None:
    """The live state without spending it (what a page shows)."""
    query = select(factor_states.c.data, factor_states.c.expires_at).where(
        factor_states.c.key == _key(purpose, name))
    async with store.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None or row.expires_at <= time.time():
        return None
    return json.loads(row.data)  # type: ignore[no-any-return]
