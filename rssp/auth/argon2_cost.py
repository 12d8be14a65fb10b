"""The argon2id cost of new password, PIN and level-3 KEK hashes: ``[security]``, set per process.

RFC 9106 section 4 leaves the cost to the operator's hardware. Every hash keeps the parameters
it was made with (a password or PIN hash is a PHC string, a level-3 PIN record names its own:
:class:`rssp.sam.kek.PinRecord`), so checking a secret never reads this setting: a change applies
to hashes made afterwards, and older ones keep working. Only the work burnt for an unknown user
or a missing record (so that it takes as long as a real check) follows the setting.

Defaults: RFC 9106's second recommended option for passwords and PINs of levels 1-2 (64 MiB,
3 passes, 4 lanes; about 0.14 s of CPU here), twice the memory on one lane for the level-3 KEK.
A test or development instance may set far less (the test suite uses 1 MiB and one pass, since
argon2 was most of its CPU); start-up warns below OWASP's minimum for argon2id (19 MiB, 2 passes).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from rssp.config import SecurityConfig

log = logging.getLogger("rssp.auth")

OWASP_MIN_MEMORY_KIB, OWASP_MIN_PASSES = 19 * 1024, 2
MAX_LANES = 255  # argon2 allows 2^24 - 1; more lanes than cores only add threads


@dataclass(frozen=True)
class Argon2Cost:
    """argon2id's memory (KiB), passes (time cost) and lanes (parallelism)."""

    memory_kib: int
    passes: int
    lanes: int

    def problem(self) -> str | None:
        """Why argon2 would refuse these parameters, or None."""
        values = (self.memory_kib, self.passes, self.lanes)
        if not all(isinstance(v, int) and not isinstance(v, bool) for v in values):
            return "memory_kib, passes and lanes are whole numbers"
        if not 1 <= self.lanes <= MAX_LANES:
            return f"lanes is 1 to {MAX_LANES}"
        if self.passes < 1:
            return "passes is at least 1"
        if self.memory_kib < 8 * self.lanes:
            return "memory_kib is at least 8 per lane"
        return None

    @property
    def weak(self) -> bool:
        return self.memory_kib < OWASP_MIN_MEMORY_KIB or self.passes < OWASP_MIN_PASSES


PASSWORDS = Argon2Cost(64 * 1024, 3, 4)
LEVEL3_KEK = Argon2Cost(128 * 1024, 3, 1)

_current = {"passwords": PASSWORDS, "level3_kek": LEVEL3_KEK}


def configure(security: SecurityConfig, *, announce: bool = False) -> None:
    """This process's costs for new hashes, from the loaded ``[security]`` (validated there).

    ``announce``: log a weak cost (``rssp serve``; a CLI command stays quiet).
    """
    _current["passwords"] = security.argon2
    _current["level3_kek"] = security.level3_kek_argon2
    for name, cost in _current.items():
        if announce and cost.weak:
            log.warning("[security] argon2 cost of %s (%d KiB, %d passes) is below OWASP's minimum for argon2id "
                        "(19 MiB, 2 passes): for test and development instances only", name.replace("_", " "),
                        cost.memory_kib, cost.passes)


def password_cost() -> Argon2Cost:
    """The cost of new password and level 1-2 PIN hashes."""
    return _current["passwords"]


def kek_cost() -> Argon2Cost:
    """The cost of new level-3 PIN records (the KEK's stretching)."""
    return _current["level3_kek"]
