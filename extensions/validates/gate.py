"""Admission to the validation threads: bounded, fair between callers, never an endless wait.

Validation is CPU work a caller chooses the size of. Without a bound, validations pile up
behind each other (three PDFs with many incremental updates held every other validation for
a minute) and their documents pile up in memory. The gate, on the server's event loop:

- lets ``concurrent_validations`` run at once (one validation thread each, :mod:`.engine`);
- lets ``queued_validations`` more wait; beyond that a request is refused at once
  (:class:`Busy`: 503 ``temporarily_unavailable`` with ``Retry-After``);
- lets one caller have at most ``validations_per_caller`` running and waiting, so one
  caller's heavy documents cannot take every thread and every place in the queue;
- keeps the last free thread for a caller with nothing running, so a caller arriving while
  another one's heavy documents run starts at once instead of waiting for them;
- gives a freed thread to the waiting request whose caller has the fewest running, the
  earliest first among equals (a caller with many waiting cannot hold back one with none).
"""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from dataclasses import dataclass, field

RETRY_AFTER_SECONDS = 2


class Busy(Exception):
    """No room for this validation now (the whole queue, or this caller's share, is taken)."""


@dataclass(order=True)
class _Waiter:
    seq: int
    caller: str = field(compare=False)
    granted: asyncio.Future[None] = field(compare=False)


class Gate:
    def __init__(self, *, running: int, waiting: int, per_caller: int) -> None:
        self.max_running, self.max_waiting, self.per_caller = running, waiting, per_caller
        self.running: Counter[str] = Counter()
        self.admitted: Counter[str] = Counter()  # running + waiting, per caller
        self.waiters: list[_Waiter] = []
        self._seq = itertools.count()

    @property
    def active(self) -> int:
        return sum(self.running.values())

    async def acquire(self, caller: str) -> None:
        """Wait for a thread; :class:`Busy` at once if there is no room to wait."""
        if sum(self.admitted.values()) >= self.max_running + self.max_waiting or \
                self.admitted[caller] >= self.per_caller:
            raise Busy
        self.admitted[caller] += 1
        waiter = _Waiter(next(self._seq), caller, asyncio.get_running_loop().create_future())
        self.waiters.append(waiter)
        self._dispatch()
        try:
            await waiter.granted
        except asyncio.CancelledError:
            if waiter.granted.done() and not waiter.granted.cancelled():
                self.release(caller)  # granted just as the client left: pass the thread on
            else:
                self.waiters.remove(waiter)
                self._forget(caller)
            raise

    def release(self, caller: str) -> None:
        """A validation of ``caller`` ended: its thread goes to the fairest waiter."""
        self.running[caller] -= 1
        self._forget(caller)
        self._dispatch()

    def _dispatch(self) -> None:
        """Start waiters while threads are free: fewest running first, then the earliest."""
        while True:
            eligible = [w for w in self.waiters if self._may_run(w.caller)]
            if not eligible:
                return
            waiter = min(eligible, key=lambda w: (self.running[w.caller], w.seq))
            self.waiters.remove(waiter)
            self.running[waiter.caller] += 1
            waiter.granted.set_result(None)

    def _may_run(self, caller: str) -> bool:
        """A free thread, and not the last one unless the caller has nothing running."""
        free = self.max_running - self.active
        return free > 1 or (free == 1 and self.running[caller] == 0)

    def _forget(self, caller: str) -> None:
        self.admitted[caller] -= 1
        for counter in (self.admitted, self.running):
            if counter[caller] <= 0:
                del counter[caller]
