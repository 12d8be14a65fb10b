"""Privileged credential actions (JT2A 3.1.2.2: only under a privileged user's control).

Each takes the authenticated operator's audit actor (``operator:NAME``) from the CLI.
"""

from __future__ import annotations

import time

from sqlalchemy import update

from rssp.audit import record
from rssp.errors import OperatorError
from rssp.credentials.deletion import DeletionAudit, delete_credential
from rssp.hsm import Hsm
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
    """Mark the credential deleted and destroy its key (:mod:`rssp.credentials.deletion`).

    The record commits first: a crash in between leaves a key that no credential can use,
    never a credential whose key is gone without a record. The audit record stays.
    """
    done = await delete_credential(store, hsm, credential_id, DeletionAudit(actor, detail={"reason": reason}))
    if done is None:
        raise OperatorError(f"no credential {credential_id!r}")
    if not done.key_destroyed:
        raise OperatorError(f"{credential_id} is deleted, but the HSM could not destroy its key (see the log)")
