"""TEST-ONLY: TOTP steps ahead of the clock, so that a test suite never waits for a fresh step.

A credential's TOTP code is accepted once, for the current 30-second step or one either side
(:mod:`rssp.sam.factors`): a test that authorizes one credential more than three times within
30 seconds has to wait for the clock (the suite once spent half its time so). With
``RSSP_TEST_TOTP_STEPS_AHEAD=N`` in the environment of ``rssp serve`` on a *development*
instance (one with the bundled test PKI, ``[devpki]``: ``rssp init`` without ``--production``),
the check also accepts the N steps after the credential's last used one. A used step and a past
step are still refused. A production instance ignores the variable (and logs an error), so the
setting cannot slip into production by accident; a development instance logs a warning at start.
"""

from __future__ import annotations

import logging
import os
import time
from typing import TYPE_CHECKING

import pyotp
from sqlalchemy import select

from rssp.store import Store
from rssp.store.schema import credentials

if TYPE_CHECKING:
    from rssp.config import Config

ENV = "RSSP_TEST_TOTP_STEPS_AHEAD"
MAX_STEPS_AHEAD = 1000
log = logging.getLogger("rssp.sam")

_steps_ahead = 0  # this process's setting (configure); 0 is production behaviour


def configure(config: Config) -> None:
    """Read the variable for this server process: honoured on a development instance only."""
    global _steps_ahead
    _steps_ahead = 0
    value = os.environ.get(ENV)
    if not value:
        return
    if "devpki" not in config.raw:
        log.error("%s is set but ignored: TOTP steps ahead of the clock are for development instances only", ENV)
        return
    if not value.isdigit() or not 0 < int(value) <= MAX_STEPS_AHEAD:
        log.error("%s=%r ignored: a number of steps from 1 to %d", ENV, value, MAX_STEPS_AHEAD)
        return
    _steps_ahead = int(value)
    log.warning("TEST-ONLY: TOTP codes up to %d steps past a credential's last used one are accepted (%s)",
                _steps_ahead, ENV)


def steps_ahead() -> int:
    """This process's setting: 0 (production behaviour) unless configure() honoured the variable."""
    return _steps_ahead


async def step_ahead(store: Store, credential_id: str, totp: pyotp.TOTP, otp: str, window: int) -> int | None:
    """The step past the clock's window (``window`` steps either side) the code matches, if the setting is on."""
    if not _steps_ahead:
        return None
    now = int(time.time() // totp.interval)
    async with store.read() as conn:
        last = (await conn.execute(select(credentials.c.totp_last_step)
                                   .where(credentials.c.id == credential_id))).scalar()
    if last is None:
        return None
    for step in range(max(now + window + 1, last + 1), last + _steps_ahead + 1):
        if totp.verify(otp, for_time=step * totp.interval, valid_window=0):
            return step
    return None
