"""``requestID``: a retried ``generateKey`` or ``deleteKey`` changes nothing (JT2A Part II 3.3.2).

The first call reserves ``(caID, requestID)`` by inserting a row (the primary key makes two
racing calls collide in the database, across processes) and stores its response in the same
transaction as the change it made. A replay gets that stored response back; a requestID reused
for different parameters, or one whose first call is still running, is refused.
"""

from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Awaitable, Callable
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError

from rssp.errors import invalid_request
from rssp.store import Conn, Store
from rssp.store.schema import manage_requests


def _digest(params: dict[str, Any]) -> str:
    return hashlib.sha256(json.dumps(params, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


async def reserve(store: Store, ca_id: str, request_id: str, method: str, params: dict[str, Any]) -> dict | None:
    """None if this call is the first with that requestID (now reserved), else the stored response."""
    digest = _digest(params)
    try:
        async with store.write() as conn:
            await conn.execute(manage_requests.insert().values(
                ca_id=ca_id, request_id=request_id, method=method, params_digest=digest, created_at=time.time()))
        return None
    except IntegrityError:
        pass
    async with store.read() as conn:
        row = (await conn.execute(select(manage_requests).where(
            manage_requests.c.ca_id == ca_id, manage_requests.c.request_id == request_id))).first()
    if row is None or row.method != method or row.params_digest != digest:
        raise invalid_request("requestID was already used for another request")
    if row.response is None:
        raise invalid_request("A request with this requestID is in progress")
    return json.loads(row.response)


async def complete(conn: Conn, ca_id: str, request_id: str, response: dict[str, Any]) -> None:
    """Store the response, in the transaction of the change it reports."""
    await conn.execute(update(manage_requests).where(
        manage_requests.c.ca_id == ca_id, manage_requests.c.request_id == request_id,
    ).values(response=json.dumps(response)))


async def release(store: Store, ca_id: str, request_id: str) -> None:
    """The first call failed: forget the reservation so the RA can retry with the same requestID."""
    async with store.write() as conn:
        await conn.execute(delete(manage_requests).where(
            manage_requests.c.ca_id == ca_id, manage_requests.c.request_id == request_id,
            manage_requests.c.response.is_(None)))


async def once(store: Store, ca_id: str, request_id: str | None, method: str, params: dict[str, Any],
               work: Callable[[], Awaitable[dict[str, Any]]]) -> dict[str, Any]:
    """Run ``work`` once per ``(caID, requestID)``: a replay gets the first response back.

    ``work`` stores its response with :func:`complete` in its own transaction; if it fails, the
    reservation is released so the RA can retry. Without a requestID it simply runs.
    """
    if request_id is None:
        return await work()
    stored = await reserve(store, ca_id, request_id, method, params)
    if stored is not None:
        return stored
    try:
        return await work()
    except BaseException:
        await release(store, ca_id, request_id)
        raise
