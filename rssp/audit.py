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


from sqlalchemy import Insert

from rssp.store import Conn
from rssp.store.schema import audit

_SECRET_KEYS = {"pin", "password", "otp", "sad", "token", "secret", "seed", "access_token", "refresh_token"}


def _check_detail(detail: dict[str, Any]) -> None:
    for key in detail:
        if key.lower() in _SECRET_KEYS:
            raise ValueError(f"audit detail must not carry {key!r}")


async def record(conn: Conn, **fields: Any) -> None:
    """Append one audit record in the caller's transaction (see :func:`audit_insert`)."""
    await conn.execute(audit_insert(**fields))


def audit_insert(
    *,
    actor: str,
    action: str,
    outcome: str,
    target: str | None = None,
    client_ip: str | None = None,
    detail: dict[str, Any] | None = None,
) -> Insert:
    """The INSERT of one audit record, for synchronous and asynchronous transactions alike."""
    detail = detail or {}
    _check_detail(detail)
    return (
        audit.insert().values(
            ts=time.time(),
            actor=actor,
            action=action,
            target=target,
            outcome=outcome,
            client_ip=client_ip,
            detail=json.dumps(detail, separators=(",", ":"), ensure_ascii=False) if detail else None,
        )
    )
