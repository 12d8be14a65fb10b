"""Group commit: the hot-path transactions waiting at the same moment share one database hop.

Under concurrent signHash load each request spends a SAD in a short write transaction. On
SQLite every one of them paid a thread hop, a ``BEGIN IMMEDIATE`` and a WAL commit, one after
the other behind the process's write lock. Here the requests that arrive while a transaction
is running queue up (:class:`rssp.coalesce.Coalescer`), and the next hop runs all of them in
one transaction, each inside its own SAVEPOINT: a request that fails (an exhausted SAD, a hash
not authorized) rolls back only its own work and gets its own exception, while the others
commit together. No caller's future resolves before the commit that holds its work, so
nothing is reported done that could still be lost.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

from sqlalchemy.engine import Connection

from rssp.coalesce import Outcome

Work = Callable[[Connection], Any]


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
