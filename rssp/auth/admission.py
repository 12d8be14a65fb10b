"""A bound on the unauthenticated login work a process accepts at once.

Anyone can send ``auth/login``, the OAuth login form or ``manages/login``; each costs database
work and (for passwords) an argon2 check. Unbounded, a burst of them queued ahead of every
signer's request (#20: 20 parallel logins stalled the service for a minute). Here a process
runs at most ``limit`` such checks at a time, waiting or running; one more is refused at once
with :class:`LoginBusy`, which callers answer like a throttle (429 with Retry-After). The
count lives on the event loop thread, so a plain integer is enough.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager

from rssp.auth.throttle import LoginThrottled


class LoginBusy(LoginThrottled):
    """This process has as many login checks in progress as it accepts."""

    description = "Too many login attempts in progress; try again later"

    def __init__(self) -> None:
        super().__init__(retry_after=1)


class LoginGate:
    def __init__(self, limit: int) -> None:
        self.limit = limit
        self.in_progress = 0

    @contextmanager
    def admit(self) -> Iterator[None]:
        """Hold one place for the body of the ``with``; raise :class:`LoginBusy` if none is free."""
        if self.in_progress >= self.limit:
            raise LoginBusy()
        self.in_progress += 1
        try:
            yield
        finally:
            self.in_progress -= 1
