"""Checking a signer's service password, throttled: what ``auth/login`` and the OAuth login
page both go through, so neither can be used to guess passwords faster than the other."""

from __future__ import annotations

from rssp.auth.passwords import verify_secret
from rssp.auth.throttle import LoginThrottle, LoginThrottled
from rssp.store import Store
from rssp.users import User, find_user

__all__ = ["LoginThrottled", "PasswordLogin"]


class PasswordLogin:
    def __init__(self, store: Store, throttle: LoginThrottle) -> None:
        self.store = store
        self.throttle = throttle

    async def authenticate(self, username: str, password: str, address: str | None) -> User | None:
        """The active user these credentials name, or None; raises :class:`LoginThrottled`.

        A blocked username or address is refused before any argon2 work is spent on it.
        """
        await self.throttle.check(username, address)
        user = await find_user(self.store, username)
        ok = await verify_secret(user.password_hash if user else None, password)
        if not ok or user is None or user.status != "active":
            await self.throttle.failed(username, address)
            return None
        await self.throttle.succeeded(username)
        return user
