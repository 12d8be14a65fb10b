"""SQLite driven from one dedicated thread per process, one hop per statement.

aiosqlite makes about four thread hops per statement (cursor, execute, fetch, close) and lets
several connections of one process race for SQLite's write lock, where the loser sleeps in
SQLite's busy handler: measured on signHash, 31 hops and up to seconds of p99 latency per
request. Here every statement is one hop to the store's own thread, results are read to the
end there, and write transactions of a process queue on an asyncio lock instead of sleeping
inside SQLite. Across processes they queue on a :class:`~rssp.store.writer_lock.WriterLock`
in front of SQLite's own lock (``BEGIN IMMEDIATE``).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager, suppress
from functools import partial
from typing import Any, TypeVar

from sqlalchemy import create_engine as create_sync_engine
from sqlalchemy import event
from sqlalchemy.engine import Connection, CursorResult, Engine, Row
from sqlalchemy.pool import NullPool

from rssp.coalesce import Coalescer, Outcome
from rssp.store.db import sqlite_begin, sqlite_pragmas
from rssp.store.errors import database_unavailable
from rssp.store.group import Work, run_each, run_grouped
from rssp.store.writer_lock import WriterLock
from rssp.threads import named_pool

T = TypeVar("T")


class BufferedResult:
    """A result read to its end inside the database thread (the subset of Result we use)."""

    def __init__(self, result: CursorResult[Any]) -> None:
        self.rowcount = result.rowcount
        self._rows: list[Row[*tuple[Any, ...]]] = list(result.all()) if result.returns_rows else []

    def first(self) -> Row[*tuple[Any, ...]] | None:
        return self._rows[0] if self._rows else None

    def all(self) -> list[Row[*tuple[Any, ...]]]:
        return list(self._rows)

    def scalar(self) -> Any:
        return self._rows[0][0] if self._rows else None

    def scalars(self) -> BufferedScalars:
        return BufferedScalars([row[0] for row in self._rows])


class BufferedScalars:
    def __init__(self, values: list[Any]) -> None:
        self._values = values

    def all(self) -> list[Any]:
        return list(self._values)


class ReadConnection:
    """What ``read()`` yields: each statement is one read on the store thread's own read connection.

    Nothing is checked out or held between statements, so no number of concurrent readers can
    exhaust anything the store thread would then have to wait for (the pool deadlock of #20:
    a pooled connection taken on the store thread could only be returned by a call queued
    behind the one waiting for it). Every ``read()`` in rssp runs statements that need no
    shared snapshot; a caller that does uses :meth:`SqliteStore.query` with one function.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store

    async def execute(self, statement: Any, parameters: Any = None) -> BufferedResult:
        result: BufferedResult = await self._store.query(partial(_buffered, statement, parameters))
        return result


def _buffered(statement: Any, parameters: Any, conn: Connection) -> BufferedResult:
    return BufferedResult(conn.execute(statement, parameters))


class WriteTransaction:
    """What ``write()`` yields: one transaction on the store thread's held write connection.

    Only one is open per process at a time (the store's write lock), and grouped transactions
    take the same lock, so the held connection is never shared. The inter-process writer lock
    is taken at the first statement and released when the transaction ends.
    """

    def __init__(self, store: SqliteStore) -> None:
        self._store = store
        self._conn: Connection | None = None

    async def execute(self, statement: Any, parameters: Any = None) -> BufferedResult:
        return await self._store.call(self._execute, statement, parameters)

    async def run_sync(self, fn: Callable[[Connection], T]) -> T:
        """Run the synchronous ``fn`` in this transaction, in one hop (as ``AsyncConnection.run_sync``)."""
        return await self._store.call(lambda: fn(self._connection()))

    def _execute(self, statement: Any, parameters: Any) -> BufferedResult:
        conn = self._connection()
        try:
            return BufferedResult(conn.execute(statement, parameters))
        except Exception as exc:
            self._store.forget_on(exc, write=True)  # a read-only or locked database: reopen next time
            raise

    def _connection(self) -> Connection:
        if self._conn is None:  # begin lazily: the first statement pays no extra hop
            self._store.writer_lock.acquire()
            try:
                conn = self._store.held_connection(write=True)
                conn.begin()
            except BaseException:
                self._store.writer_lock.release()
                raise
            self._conn = conn
        return self._conn

    def finish(self, commit: bool) -> None:
        """Commit or roll back (store thread); the writer lock is released whatever happens."""
        if self._conn is None:
            return
        try:
            if commit:
                self._conn.commit()
            else:
                self._conn.rollback()
        except Exception as exc:
            self._store.forget_on(exc, write=True)
            raise
        finally:
            if not self._conn.closed and self._conn.in_transaction():  # never leave it mid-transaction
                self._conn.rollback()
            self._conn = None
            self._store.writer_lock.release()


_MAX_GROUP = 64  # units per grouped transaction: bounds how long one commit holds the writer lock


class SqliteStore:
    """The :class:`~rssp.store.Store` interface over a file SQLite database."""

    def __init__(self, url: str) -> None:
        self.url = url
        self._executor = named_pool("rssp-sqlite", 1)
        self.sync_engine: Engine = create_sync_engine(
            url, connect_args={"timeout": 30, "check_same_thread": False}, poolclass=NullPool
        )  # no pool: the store thread holds its two connections for good (see held_connection)
        event.listen(self.sync_engine, "connect", sqlite_pragmas)
        event.listen(self.sync_engine, "begin", sqlite_begin)
        self.writer_lock = WriterLock(url)  # taken and released on the store's thread only
        self._write_lock: asyncio.Lock | None = None  # write transactions of this process queue here
        self._writes: Coalescer[Work, Any] = Coalescer(self._write_batch, max_batch=_MAX_GROUP)
        self._reads: Coalescer[Work, Any] = Coalescer(self._read_batch, max_batch=_MAX_GROUP)
        self._held: dict[bool, Connection] = {}  # store thread only: write? -> its connection

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[ReadConnection]:
        yield ReadConnection(self)

    @asynccontextmanager
    async def write(self) -> AsyncIterator[WriteTransaction]:
        """A transaction that commits on success and rolls back on any exception.

        The end of the transaction is shielded: a caller cancelled inside the block must not
        leave the held connection mid-transaction with the writer lock taken, which would stop
        every later write of the process.
        """
        async with self._lock():
            conn = WriteTransaction(self)
            try:
                yield conn
            except BaseException:
                await asyncio.shield(self.call(conn.finish, False))
                raise
            await asyncio.shield(self.call(conn.finish, True))

    async def transaction(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` as one write transaction, grouped with those waiting beside it.

        The hot path (spending a SAD) uses this: one hop to the store's thread and one commit
        serve every spend queued meanwhile (:mod:`rssp.store.group`), each in its own savepoint.
        """
        result: T = await self._writes.submit(fn)
        return result

    async def query(self, fn: Callable[[Connection], T]) -> T:
        """Run ``fn`` read-only; the reads queued meanwhile share its hop and snapshot."""
        result: T = await self._reads.submit(fn)
        return result

    async def _write_batch(self, fns: list[Work]) -> list[Outcome]:
        def in_thread() -> list[Outcome]:
            try:
                with self.writer_lock.held():
                    conn = self.held_connection(write=True)
                    with conn.begin():
                        outcomes = run_grouped(conn, fns)
            except Exception as exc:
                self.forget_on(exc, write=True)
                raise
            for ok, value in outcomes:
                if not ok:
                    self.forget_on(value, write=True)
            return outcomes

        async with self._lock():
            return await self.call(in_thread)

    async def _read_batch(self, fns: list[Work]) -> list[Outcome]:
        def in_thread() -> list[Outcome]:
            try:
                conn = self.held_connection(write=False)
                transaction = conn.begin()
                try:
                    return run_each(conn, fns)
                finally:
                    transaction.rollback()
            except Exception as exc:
                self.forget_on(exc, write=False)
                raise

        return await self.call(in_thread)

    def engine(self, write: bool) -> Engine:
        """The engine for a write transaction (BEGIN IMMEDIATE, see :func:`sqlite_begin`) or a read."""
        return self.sync_engine.execution_options(sqlite_immediate=True) if write else self.sync_engine

    def held_connection(self, write: bool) -> Connection:
        """The store thread's own connection for grouped work, kept open between batches.

        Why: checking a connection out of the pool and back (with its reset) cost ~55 µs per
        transaction, more than the SAD spend it carried. One connection for writes (its BEGIN
        is IMMEDIATE) and one for reads; a connection that broke is replaced.
        """
        conn = self._held.get(write)
        if conn is None or conn.closed or conn.invalidated:
            conn = self._held[write] = self.engine(write).connect()
        return conn

    def forget_on(self, exc: BaseException, write: bool) -> None:
        """Drop the held connection after a failure of the database itself (store thread only).

        Why: SQLite opens a file it cannot write read-only and keeps it so; a connection made
        while the database was read-only (or locked, or its directory gone) would fail for
        ever after the cause went away (#18). The next use opens a fresh one.
        """
        if not database_unavailable(exc):
            return
        conn = self._held.pop(write, None)
        if conn is not None:
            with suppress(Exception):  # it is being thrown away
                conn.invalidate()

    def _close_held(self) -> None:
        for conn in self._held.values():
            conn.close()
        self._held.clear()

    def _lock(self) -> asyncio.Lock:
        if self._write_lock is None:
            self._write_lock = asyncio.Lock()
        return self._write_lock

    async def close(self) -> None:
        await self.call(self._close_held)
        await self.call(self.sync_engine.dispose)
        await self.call(self.writer_lock.close)
        self._executor.shutdown(wait=True)
