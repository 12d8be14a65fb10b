"""Privileged credential actions (JT2A 3.1.2.2: only under a privileged user's control).

Each takes the authenticated operator's audit actor (``operator:NAME``) from the CLI.
"""

from __future__ import annotations

import time

from sqlalchemy import select, update

from rssp.audit import record
from rssp.errors import OperatorError
from rssp.hsm import Hsm, KeyNotFound
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


async def delete(store: Store, hsm: Hsm, credential_id: str, reason: str, *, actor: str) -> None:
    """Mark the credential deleted, then destroy its key in the HSM (C_DestroyObject).

    The record commits first: a crash in between leaves a key that no credential can use,
    never a credential whose key is gone without a record. The audit record stays.
    """
    async with store.write() as conn:
        key_id = (await conn.execute(select(credentials.c.hsm_key_id).where(
            credentials.c.id == credential_id, credentials.c.status != "deleted"))).scalar()
        if key_id is None:
            raise OperatorError(f"no credential {credential_id!r}")
        await conn.execute(update(credentials).where(credentials.c.id == credential_id)
                           .values(status="deleted", updated_at=time.time()))
        await record(conn, actor=actor, action="credential.delete", target=credential_id, outcome="ok",
                     detail={"reason": reason})
    try:
        await hsm.destroy_key(key_id)
    except KeyNotFound:
        pass  # already gone: the credential is deleted either way
