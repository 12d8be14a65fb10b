"""Signers: the people who own credentials and log in to the service."""

from __future__ import annotations

import time
from dataclasses import dataclass

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError

from rssp.audit import record
from rssp.auth.passwords import hash_secret
from rssp.auth.secrets import new_id
from rssp.errors import OperatorError
from rssp.store import Store
from rssp.store.schema import users


class UserExists(OperatorError):
    """The username is taken."""


@dataclass(frozen=True)
class User:
    id: str
    username: str
    password_hash: str
    status: str


async def add_user(store: Store, username: str, password: str, *, actor: str = "operator") -> User:
    """Create a signer; the password is kept only as an argon2id hash."""
    if not username or len(username) > 128 or ":" in username:
        raise ValueError("a username is 1-128 characters without ':' (HTTP Basic splits on it)")
    password_hash = await hash_secret(password)
    user = User(id=new_id(), username=username, password_hash=password_hash, status="active")
    try:
        async with store.write() as conn:
            await conn.execute(
                users.insert().values(
                    id=user.id, username=username, password_hash=password_hash,
                    status="active", created_at=time.time(),
                )
            )
            await record(conn, actor=actor, action="user.add", target=user.id, outcome="ok",
                         detail={"username": username})
    except IntegrityError:
        raise UserExists(username) from None
    return user


async def find_user(store: Store, username: str) -> User | None:
    async with store.read() as conn:
        row = (await conn.execute(select(users).where(users.c.username == username))).first()
    if row is None:
        return None
    return User(id=row.id, username=row.username, password_hash=row.password_hash, status=row.status)


async def find_active_user_id(store: Store, reference: str) -> str | None:
    """The ID of the active user ``reference`` names, by user ID first, else by username; None otherwise.

    For callers that take either (an RA's ``manages/generateKey`` ``userID``): an ID that names an
    inactive user is that user's, never another's username.
    """
    async with store.read() as conn:
        row = (await conn.execute(select(users.c.id, users.c.status).where(users.c.id == reference))).first()
        if row is None:
            row = (await conn.execute(select(users.c.id, users.c.status).where(users.c.username == reference))).first()
    return str(row.id) if row is not None and row.status == "active" else None
