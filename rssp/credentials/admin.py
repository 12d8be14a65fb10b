"""Privileged credential actions (JT2A 3.1.2.2: only under a privileged user's control)."""

from __future__ import annotations

import time

from sqlalchemy import update

from rssp.audit import record
from rssp.errors import OperatorError
from rssp.store import Store
from rssp.store.schema import credentials


async def unlock(store: Store, credential_id: str, *, actor: str = "operator") -> None:
    """Clear the lockout and the failure count of a credential."""
    async with store.write() as conn:
        result = await conn.execute(
            update(credentials)
            .where(credentials.c.id == credential_id, credentials.c.status != "deleted")
            .values(locked=False, failed_attempts=0, updated_at=time.time())
        )
        if result.rowcount != 1:
            raise OperatorError(f"no credential {credential_id!r}")
        await record(conn, actor=actor, action="credential.unlock", target=credential_id, outcome="ok")
