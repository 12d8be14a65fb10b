"""Giving back a lockout attempt that a database outage cut short (#18).

``credentials/authorize`` counts an attempt before it checks the factors (:mod:`rssp.sam.factors`).
When the factors were right but the database failed while the success was being written, the
signer gets 503 and the attempt stays counted although it was no failure: a few such cuts fill
the count, and the credential then answers its own signer 429 and, two minutes later, locks.

So the cut request's process gives the attempt back once the database answers again: a
background task retries (0.5 s doubling up to 5 s, for at most 10 minutes) one conditional
UPDATE that applies only if the credential's row is exactly as this attempt left it: the same
``updated_at`` (each counted attempt and each failure writes its own time), not locked, an
attempt still counted. Anything that happened to the credential since (another attempt, a
failure, a success that reset the count, a lock) makes it a no-op: an attempt is never given
back twice and a failure is never undone.

An attempt whose factors the HSM could not check (a level-3 PIN, a TOTP seed, while the token
is gone) is given back at once (:func:`give_back`): the signer gets 503, and no guess was judged.

Not given back: a wrong factor (a failure whatever happened next); an attempt whose own count
failed (it may or may not have been committed: nothing tells which); the attempts of a process
that dies before the database returns (then the two-minute rule of :mod:`rssp.sam.factors`
applies).
"""

from __future__ import annotations

import asyncio
import logging
import time

from sqlalchemy import update

from rssp.store import Store
from rssp.store.errors import database_unavailable
from rssp.store.schema import credentials

log = logging.getLogger("rssp.sam")

GIVE_BACK_SECONDS = 600.0
_FIRST_DELAY, _MAX_DELAY = 0.5, 5.0
_pending: set[asyncio.Task[None]] = set()  # strong references: a task nobody holds may be collected


def give_back_if_unavailable(exc: BaseException, store: Store, credential_id: str, taken_at: float) -> None:
    """After ``exc`` cut a successful check: if the database failed, give the attempt back when it returns."""
    if not database_unavailable(exc):
        return
    task = asyncio.get_running_loop().create_task(_give_back(store, credential_id, taken_at))
    _pending.add(task)
    task.add_done_callback(_pending.discard)


async def give_back(store: Store, credential_id: str, taken_at: float) -> None:
    """Give the attempt counted at ``taken_at`` back now, if the row is exactly as that attempt left it.

    For an attempt that judged no factor while the database works (the HSM could not check one).
    """
    async with store.write() as conn:
        await conn.execute(
            update(credentials)
            .where(credentials.c.id == credential_id, credentials.c.updated_at == taken_at,
                   credentials.c.locked.is_(False), credentials.c.failed_attempts > 0)
            .values(failed_attempts=credentials.c.failed_attempts - 1)
        )


async def _give_back(store: Store, credential_id: str, taken_at: float) -> None:
    deadline = time.monotonic() + GIVE_BACK_SECONDS
    delay = _FIRST_DELAY
    while True:
        await asyncio.sleep(delay)  # the database just failed: give it a moment first
        try:
            await give_back(store, credential_id, taken_at)
            return
        except Exception as exc:
            if not database_unavailable(exc) or time.monotonic() + delay > deadline:
                log.warning("an attempt cut by a database outage stays counted (%s)", type(exc).__name__)
                return
        delay = min(delay * 2, _MAX_DELAY)
