"""Deleting a credential: the one way, whoever asks (operator, signer, a CA's RA).

One conditional ``UPDATE`` marks the row deleted (and drops a level-3 key's wrapped blob, the
only copy of that key) and returns the HSM key to destroy; the caller's own changes and the
audit record commit in the same transaction. Only then is the key destroyed in the HSM
(C_DestroyObject): a crash in between leaves a key no credential can use, never a credential
whose key is gone without a record. The row and the audit trail stay.

Of two concurrent deletions exactly one changes the row; the other finds nothing to delete
(None), which each caller turns into its own answer (an error, or the first answer again).
Callers: ``rssp credential delete`` (:mod:`rssp.credentials.admin`), ``credentials/delete``
(:mod:`rssp.api.lifecycle`) and ``manages/deleteKey`` (extensions/manages).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass

from sqlalchemy import ColumnElement, update

from rssp.audit import ChangeAudit
from rssp.hsm import Hsm, HsmError, KeyNotFound
from rssp.store import Conn, Store
from rssp.store.schema import credentials

log = logging.getLogger("rssp.credentials")


@dataclass(frozen=True)
class DeletionAudit(ChangeAudit):
    """The audit record of a deletion: who, under which action name (``credential.delete`` unless named), why."""

    action: str = "credential.delete"


@dataclass(frozen=True)
class Deleted:
    credential_id: str
    key_destroyed: bool  # False: the HSM failed (logged); the credential is deleted all the same


async def delete_credential(store: Store, hsm: Hsm, credential_id: str, audit: ChangeAudit, *,
                            only: Sequence[ColumnElement[bool]] = (),
                            also: Callable[[Conn], Awaitable[None]] | None = None) -> Deleted | None:
    """Delete the credential if it is not deleted yet and matches ``only``; None if nothing was.

    ``also(conn)`` runs in the deleting transaction (e.g. an RA's enrollment row, a replay record).
    """
    async with store.write() as conn:
        statement = (update(credentials)
                     .where(credentials.c.id == credential_id, credentials.c.status != "deleted", *only)
                     .values(status="deleted", wrapped_key=None, updated_at=time.time())
                     .returning(credentials.c.hsm_key_id))
        row = (await conn.execute(statement)).first()
        if row is None:
            return None
        if also is not None:
            await also(conn)
        await audit.write(conn, credential_id)
    return Deleted(credential_id, await _destroy(hsm, credential_id, row.hsm_key_id))


async def _destroy(hsm: Hsm, credential_id: str, key_id: str) -> bool:
    try:
        await hsm.destroy_key(key_id)
    except KeyNotFound:
        pass  # already gone, or a level-3 key that only ever existed wrapped
    except HsmError as exc:
        log.error("credential %s deleted but its HSM key could not be destroyed: %s", credential_id, exc)
        return False
    return True
