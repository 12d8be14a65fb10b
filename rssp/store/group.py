"""Group commit: the hot-path transactions waiting at the same moment share one database hop.

Under concurrent signHash load each request spends a SAD in a short write transaction. On
SQLite every one of them paid a thread hop, a ``BEGIN IMMEDIATE`` and a WAL commit, one after
the other behind the process's write lock. Here the requests that arrive while a transaction
is running queue up, and the next hop runs all of them in one transaction, each inside its own
SAVEPOINT: a request that fails (an exhausted SAD, a hash not authorized) rolls back only its
own work and gets its own exception, while the others commit together. No caller's future
resolves before the commit that holds its work, so nothing is reported done that could still
be lost.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Iterator
from contextlib import contextmanager
from typing import Any, Generic, TypeVar

from sqlalchemy.engine import Connection

T = TypeVar("T")
Work = Callable[[Connection], Any]
Outcome = tuple[bool, Any]  # (succeeded, result or exception)


class GroupRunner(Generic[T]):
    """Queues units of work and hands them, in arrival order, to ``run_batch`` in groups.

    ``run_batch`` gets the list of queued functions and returns one :data:`Outcome` per
    function; it is awaited by one flushing task at a time, so batches never overlap.
    """

    def __init__(self, run_batch: Callable[[list[Work]], Awaitable[list[Outcome]]], max_batch: int = 64) -> None:
        self._run_batch = run_batch
        self._max_batch = max_batch
        self._pending: list[tuple[Work, asyncio.Future[Any]]] = []
        self._flushing = False
        self._task: asyncio.Task[None] | None = None  # held: the loop keeps only weak references

    async def submit(self, fn: Work) -> Any:
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._pending.append((fn, future))
        if not self._flushing:
            self._flushing = True
            self._task = asyncio.get_running_loop().create_task(self._flush())
        return await future

    async def _flush(self) -> None:
        try:
            while self._pending:
                batch = self._pending[: self._max_batch]
                del self._pending[: self._max_batch]
                try:
                    outcomes = await self._run_batch([fn for fn, _ in batch])
                except BaseException as exc:  # the batch as a whole failed (commit, lock): all fail
                    outcomes = [(False, exc)] * len(batch)
                for (_, future), (ok, value) in zip(batch, outcomes, strict=True):
                    if future.done():
                        continue
                    if ok:
                        future.set_result(value)
                    else:
                        future.set_exception(value)
        finally:
            self._flushing = False


def run_grouped(conn: Connection, fns: list[Work]) -> list[Outcome]:
    """Run each function in its own SAVEPOINT of ``conn``'s open transaction.

    A lone function runs without a savepoint: its exception then aborts the whole
    transaction, which holds nothing else.
    """
    if len(fns) == 1:
        return [(True, fns[0](conn))]
    savepoint = _sqlite_savepoint if conn.dialect.name == "sqlite" else _savepoint
    outcomes: list[Outcome] = []
    for fn in fns:
        try:
            with savepoint(conn):
                outcomes.append((True, fn(conn)))
        except Exception as exc:  # this unit's own failure: its savepoint is rolled back
            outcomes.append((False, exc))
    return outcomes


@contextmanager
def _savepoint(conn: Connection) -> Iterator[None]:
    with conn.begin_nested():
        yield


@contextmanager
def _sqlite_savepoint(conn: Connection) -> Iterator[None]:
    """A savepoint issued on SQLite's own cursor.

    Why: SQLAlchemy compiles and dispatches every SAVEPOINT and RELEASE afresh (~25 µs
    each), which made a grouped spend cost as much as a lone one. The units run here never
    open savepoints or end the transaction themselves, so SQLAlchemy's view of the enclosing
    transaction stays true.
    """
    cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
    try:
        cursor.execute("SAVEPOINT rssp_unit")
        try:
            yield
        except BaseException:
            cursor.execute("ROLLBACK TO rssp_unit")
            cursor.execute("RELEASE rssp_unit")
            raise
        cursor.execute("RELEASE rssp_unit")
    finally:
        cursor.close()


def run_each(conn: Connection, fns: list[Work]) -> list[Outcome]:
    """Run read-only functions one after the other, each failing on its own."""
    outcomes: list[Outcome] = []
    for fn in fns:
        try:
            outcomes.append((True, fn(conn)))
        except Exception as exc:
            outcomes.append((False, exc))
    return outcomes
