"""Checking a caller's secret before it is authenticated: throttled and admission-bounded.

``auth/login``, the OAuth login page and ``manages/login`` all go through :meth:`guarded`, so
none can be used to guess faster than another, and together they cannot queue more work in a
process than the :class:`~rssp.auth.admission.LoginGate` admits.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from typing import TypeVar

from rssp.auth.admission import LoginBusy, LoginGate
from rssp.auth.passwords import verify_login_secret
from rssp.auth.throttle import LoginThrottle, LoginThrottled
from rssp.store import Store
from rssp.users import User, find_user

__all__ = ["LoginBusy", "LoginThrottled", "PasswordLogin"]

T = TypeVar("T")


class PasswordLogin:
    def __init__(self, store: Store, throttle: LoginThrottle, gate: LoginGate) -> None:
        self.store = store
        self.throttle = throttle
        self.gate = gate

    async def guarded(self, kind: str, name: str, address: str | None,
                      check: Callable[[], Awaitable[T | None]]) -> T | None:
        """Run ``check`` (None: refused) as one attempt of ``name``, counted before it runs.

        Raises :class:`LoginBusy` when the process has no place for it, and
        :class:`LoginThrottled` while the name or the address is blocked; neither runs ``check``.
        """
        with self.gate.admit():
            await self.throttle.begin(kind, name, address)
            result = await check()
            if result is not None:
                await self.throttle.succeeded(kind, name, address)
            return result

    async def authenticate(self, username: str, password: str, address: str | None) -> User | None:
        """The active user these credentials name, or None."""

        async def check() -> User | None:
            user = await find_user(self.store, username)
            ok = await verify_login_secret(user.password_hash if user else None, password)
            return user if ok and user is not None and user.status == "active" else None

        return await self.guarded("user", username, address, check)
