"""Persistence: SQLAlchemy 2 async Core over SQLite or PostgreSQL."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine

from rssp.store.db import create_engine
from rssp.store.migrations import migrate


class Store:
    """The database of one instance, with separate read and write transactions."""

    def __init__(self, url: str) -> None:
        self.engine: AsyncEngine = create_engine(url)
        self._writer = self.engine.execution_options(sqlite_immediate=True)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        async with self.engine.connect() as conn:
            yield conn

    @asynccontextmanager
    async def write(self) -> AsyncIterator[AsyncConnection]:
        """A transaction that commits on success and rolls back on any exception."""
        async with self._writer.begin() as conn:
            yield conn

    async def migrate(self) -> int:
        return await migrate(self.engine)

    async def close(self) -> None:
        await self.engine.dispose()


__all__ = ["Store"]
