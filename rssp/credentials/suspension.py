"""Suspending and resuming a credential (JT2A Part II 3.3.1/3.3.2), by its signer or an operator.

A suspended credential has ``credentials.status = 'suspended'``: every signing path checks
``status = 'enabled'`` in the database (authorize, the OAuth consent page, and the SAD spend
of signHash and signDoc, which is the statement that reserves the signatures), so no process
signs with it whatever its signing-key cache holds. ``credentials/info`` shows it
``disabled``. Resuming deletes every SAD and credential-token grant issued before the
suspension: an authorization given before it does not outlive it.

Who: the signer (after authentication with the credential's factors, :mod:`rssp.api.suspension`)
or an operator (``rssp credential suspend|resume``). A signer cannot lift an operator's
suspension. Every request carries a ``requestID``, recorded in the transaction that makes the
change: the same requestID again gets the first answer back and changes nothing.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from rssp.audit import record
from rssp.errors import OperatorError
from rssp.store import Conn, Store
from rssp.store.schema import credential_suspensions, credentials, sad_hashes, sads, suspension_requests

NOT_ALLOWED = "Credential is not in a state that allows this"
OPERATOR_HOLD = "The credential was suspended by an operator; only an operator can resume it"
REQUEST_REUSED = "requestID was already used for another request"


class SuspensionError(OperatorError):
    """The change is not allowed; the message is a fixed string, safe for the API and the CLI."""


@dataclass(frozen=True)
class Change:
    """One suspend or resume request."""

    credential_id: str
    action: str  # suspend | resume
    by: str  # signer | operator
    actor: str  # the signer's user ID, or operator:NAME: also who the requestID belongs to
    request_id: str | None = None
    reason: str | None = None
    client_ip: str | None = None

    @property
    def response(self) -> dict[str, Any]:
        status = "disabled" if self.action == "suspend" else "enabled"
        return {"credentialID": self.credential_id, "key": {"status": status}}


async def replayed(store: Store, change: Change) -> dict[str, Any] | None:
    """The first answer to ``change.request_id`` if it was used before (audited as a replay), else None."""
    if change.request_id is None:
        return None
    query = select(suspension_requests).where(suspension_requests.c.requester == change.actor,
                                              suspension_requests.c.request_id == change.request_id)
    async with store.read() as conn:
        row = (await conn.execute(query)).first()
    if row is None:
        return None
    if row.action != change.action or row.credential_id != change.credential_id:
        raise SuspensionError(REQUEST_REUSED)
    async with store.write() as conn:
        await record(conn, actor=change.actor, action=f"credential.{change.action}", target=change.credential_id,
                     outcome="replayed", client_ip=change.client_ip, detail={"requestID": change.request_id})
    return dict(json.loads(row.response))


async def check_state(store: Store, status: str, change: Change) -> None:
    """Refuse early, before a factor is spent, what the transaction would refuse anyway."""
    if status != ("enabled" if change.action == "suspend" else "suspended"):
        raise SuspensionError(NOT_ALLOWED)
    if change.action == "resume" and change.by != "operator":
        async with store.read() as conn:
            if await _held_by(conn, change.credential_id) == "operator":
                raise SuspensionError(OPERATOR_HOLD)


async def _held_by(conn: Conn, credential_id: str) -> str | None:
    query = select(credential_suspensions.c.by).where(credential_suspensions.c.credential_id == credential_id)
    by: str | None = (await conn.execute(query)).scalar()
    return by


async def apply(store: Store, change: Change) -> dict[str, Any]:
    """Make the change and record its requestID, in one transaction; a replay changes nothing."""
    try:
        async with store.write() as conn:
            if change.request_id is not None:
                await conn.execute(suspension_requests.insert().values(
                    requester=change.actor, request_id=change.request_id, credential_id=change.credential_id,
                    action=change.action, response=json.dumps(change.response), created_at=time.time()))
            await (_suspend if change.action == "suspend" else _resume)(conn, change)
            await record(conn, actor=change.actor, action=f"credential.{change.action}", target=change.credential_id,
                         outcome="ok", client_ip=change.client_ip,
                         detail={"by": change.by, "reason": change.reason, "requestID": change.request_id})
    except IntegrityError:  # the same requestID committed meanwhile (a concurrent replay)
        first = await replayed(store, change)
        if first is None:
            raise
        return first
    return change.response


async def _suspend(conn: Conn, change: Change) -> None:
    now = time.time()
    result = await conn.execute(update(credentials).where(credentials.c.id == change.credential_id,
                                                          credentials.c.status == "enabled")
                                .values(status="suspended", updated_at=now))
    if result.rowcount != 1:
        raise SuspensionError(NOT_ALLOWED)
    await conn.execute(delete(credential_suspensions).where(credential_suspensions.c.credential_id ==
                                                            change.credential_id))
    await conn.execute(credential_suspensions.insert().values(
        credential_id=change.credential_id, by=change.by, actor=change.actor, reason=change.reason, suspended_at=now))


async def _resume(conn: Conn, change: Change) -> None:
    if await _held_by(conn, change.credential_id) == "operator" and change.by != "operator":
        raise SuspensionError(OPERATOR_HOLD)
    result = await conn.execute(update(credentials).where(credentials.c.id == change.credential_id,
                                                          credentials.c.status == "suspended")
                                .values(status="enabled", updated_at=time.time()))
    if result.rowcount != 1:
        raise SuspensionError(NOT_ALLOWED)
    await conn.execute(delete(credential_suspensions).where(credential_suspensions.c.credential_id ==
                                                            change.credential_id))
    # Authorizations given before the suspension (SADs, credential-token grants) end here.
    issued = select(sads.c.sad_hash).where(sads.c.credential_id == change.credential_id)
    await conn.execute(delete(sad_hashes).where(sad_hashes.c.sad_hash.in_(issued)))
    await conn.execute(delete(sads).where(sads.c.credential_id == change.credential_id))
