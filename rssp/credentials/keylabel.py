"""The HSM label of a credential's key pair, saying who made it and when.

A key pair is generated before its credential row can be written (the row holds the public
key), so a process killed between the two leaves a key with no row (#18: 9 of 38 kills of
``rssp credential create``). The label lets :mod:`rssp.doctor` tell such an orphan from a key
whose enrollment is still under way: ``cred-<credentialID> <host>:<pid>:<unix time>``. A key
of a process on this host that no longer runs is an orphan at once; another host's only
after a grace period. Labels without the suffix (older keys) count as old.
"""

from __future__ import annotations

import os
import re
import socket
import time
from dataclasses import dataclass

PREFIX = "cred-"
_LABEL = re.compile(r"^cred-(?P<cred>[A-Za-z0-9_-]+)(?: (?P<host>[^ :]+):(?P<pid>\d+):(?P<at>\d+))?$")


def make_label(credential_id: str) -> str:
    return f"{PREFIX}{credential_id} {socket.gethostname()}:{os.getpid()}:{int(time.time())}"


@dataclass(frozen=True)
class Maker:
    """Who generated a credential key, as its label says (``host`` None: an old label without it)."""

    credential_id: str
    host: str | None = None
    pid: int = 0
    created: float = 0.0

    def may_still_be_enrolling(self, grace_seconds: float, now: float | None = None) -> bool:
        """Whether the process that made the key could still be about to write its row."""
        if self.host is None:
            return False
        if self.host == socket.gethostname():
            return _alive(self.pid)
        return (now or time.time()) - self.created < grace_seconds


def parse_label(label: str) -> Maker | None:
    """The maker of a credential key, or None for a label that is not a credential key's."""
    match = _LABEL.match(label or "")
    if match is None:
        return None
    if match["host"] is None:
        return Maker(match["cred"])
    return Maker(match["cred"], match["host"], int(match["pid"]), float(match["at"]))


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
