"""The audit trail: who did what to which credential, when, from where, with what outcome.

Records are written inside the same transaction as the change they describe wherever there
is one (a SAD spend, a credential change), so a committed change always has its record.
``detail`` holds only non-secret facts (hash values, algorithms, counts): callers must never
pass PINs, OTPs, tokens, SADs or seeds, and :func:`record` refuses keys that look like them.
"""

from __future__ import annotations

import json
import time
from typing import Any


from sqlalchemy.engine import Connection

from rssp.store import Conn
from rssp.store.prepared import Prepared
from rssp.store.schema import audit

_SECRET_KEYS = {"pin", "password", "otp", "sad", "token", "secret", "seed", "access_token", "refresh_token"}


def _check_detail(detail: dict[str, Any]) -> None:
    for key in detail:
        if key.lower() in _SECRET_KEYS:
            raise ValueError(f"audit detail must not carry {key!r}")


_INSERT = audit.insert()
_ROW_KEYS = ("ts", "actor", "action", "target", "outcome", "client_ip", "detail")  # what audit_row gives
_INSERT_PREPARED = Prepared(_INSERT, column_keys=_ROW_KEYS)  # the spend's record: on the hot path


async def record(conn: Conn, **fields: Any) -> None:
    """Append one audit record in the caller's transaction (see :func:`audit_row`)."""
    await conn.execute(_INSERT, audit_row(**fields))


def write_record(conn: Connection, **fields: Any) -> None:
    """:func:`record` for synchronous transactions (:meth:`Store.transaction`)."""
    _INSERT_PREPARED.run(conn, audit_row(**fields))


def audit_row(
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """The column values of one audit record."""
    detail = detail or {}
    _check_detail(detail)
    return {
        "ts": time.time(),
        "actor": actor,
        "action": action,
        "target": target,
        "outcome": outcome,
        "client_ip": client_ip,
        "detail": json.dumps(detail, separators=(",", ":"), ensure_ascii=False) if detail else None,
    }
