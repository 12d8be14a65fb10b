"""Reading the audit trail back for operators and auditors."""

from __future__ import annotations

import json
from datetime import datetime, UTC
from typing import Any

from sqlalchemy import select

from rssp.store import Store
from rssp.store.schema import audit


async def recent(store: Store, limit: int = 50) -> list[dict[str, Any]]:
    """The newest ``limit`` records, oldest first."""
    query = select(audit).order_by(audit.c.id.desc()).limit(limit)
    async with store.read() as conn:
        rows = (await conn.execute(query)).all()
    return [
        {
            "id": r.id,
            "time": datetime.fromtimestamp(r.ts, UTC).isoformat(),
            "actor": r.actor,
            "action": r.action,
            "target": r.target,
            "outcome": r.outcome,
            "clientIP": r.client_ip,
            "detail": json.loads(r.detail) if r.detail else {},
        }
        for r in reversed(rows)
    ]
