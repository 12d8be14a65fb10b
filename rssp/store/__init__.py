"""Persistence: SQLAlchemy 2 Core over SQLite (own thread) or PostgreSQL (asyncpg).

Callers see one interface: ``async with store.read()`` / ``store.write()`` give a connection
whose ``await conn.execute(statement)`` returns a result with ``first()``, ``all()``,
``scalar()``, ``scalars().all()`` and ``rowcount``; ``write()`` commits on success and rolls
back on any exception. The request hot path instead hands a synchronous function to
``transaction()`` / ``query()``, which runs it whole in one hop (SQLite) or one ``run_sync``
(PostgreSQL).
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Any, Protocol, TypeVar

from sqlalchemy.engine import Connection
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rssp.store.db import create_postgres_engine, normalise_url
from rssp.store.migrations import LATEST, apply_migrations, current_version
from rssp.store.sqlite import SqliteStore

T = TypeVar("T")


class Conn(Protocol):
    """What a transaction offers to the code that runs in it."""

    async def execute(self, statement: Any, parameters: Any = None) -> Any: ...

    async def run_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run the synchronous ``fn`` on the transaction's connection (one hop on SQLite)."""
        ...


class PostgresStore:
    """The store over asyncpg: every statement is a network round trip on the event loop."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_postgres_engine(url)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.begin() as conn:
            yield conn

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run the synchronous ``fn`` in one transaction (each statement awaits asyncpg)."""
        async with self.engine.begin() as conn:
            return await conn.run_sync(fn)

    async def query(self, fn: Callable[[Connection], T]) -> T:
        async with self.engine.connect() as conn:
            return await conn.run_sync(fn)

    async def close(self) -> None:
        await self.engine.dispose()


class Store(Protocol):
    def read(self) -> Any: ...

    def write(self) -> Any: ...

    async def transaction(self, fn: Callable[[Connection], T]) -> T: ...

    async def query(self, fn: Callable[[Connection], T]) -> T: ...

    async def close(self) -> None: ...


def open_store(url: str) -> SqliteStore | PostgresStore:
    """The store for a database URL (``sqlite:///…`` or ``postgresql+asyncpg://…``)."""
    url = normalise_url(url)
    return SqliteStore(url) if url.startswith("sqlite") else PostgresStore(url)


async def migrate(store: Store) -> int:
    """Apply every pending schema step; return the schema version now in force.

    An up-to-date database is only read: a server (or a second host) can start on a database
    it cannot write at that moment, and answers 503 until it can (#18).
    """
    if await store.query(current_version) >= LATEST:
        return LATEST
    return await store.transaction(apply_migrations)


__all__ = ["Conn", "PostgresStore", "SqliteStore", "Store", "migrate", "open_store"]
