"""Which failures mean "the database cannot be used right now" rather than a bug.

A PostgreSQL server that is down, restarting or unreachable, a connection that broke, a pool
that could hand out no connection in time, an SQLite file that is locked by another program,
read-only or gone: none of these is the caller's fault and all may pass by themselves. The
API answers them with a CSC ``503 temporarily_unavailable`` and a ``Retry-After`` instead of a
500 with a traceback per request; the transaction that failed was rolled back (or never
began), so nothing is half-written.
"""

from __future__ import annotations

import sqlite3

from sqlalchemy import exc as sa

try:  # asyncpg is a dependency, but the classifier must not need it to import
    from asyncpg import exceptions as pg
except ImportError:  # pragma: no cover
    pg = None

_SQLITE_TRANSIENT = ("locked", "busy", "readonly", "read-only", "unable to open", "disk i/o", "disk is full")


def _sqlite_transient(exc: BaseException) -> bool:
    return isinstance(exc, sqlite3.OperationalError) and any(w in str(exc).lower() for w in _SQLITE_TRANSIENT)


def _asyncpg_transient(exc: BaseException) -> bool:
    if pg is None:
        return False
    return isinstance(exc, (pg.PostgresConnectionError, pg.InterfaceError, pg.CannotConnectNowError,
                            pg.AdminShutdownError, pg.CrashShutdownError, pg.ConnectionDoesNotExistError,
                            pg.TooManyConnectionsError, pg.ReadOnlySQLTransactionError))


def database_unavailable(exc: BaseException) -> bool:
    """True for a failure of the database or the way to it; False for anything else (bugs included)."""
    if isinstance(exc, sa.TimeoutError):  # no pooled connection became free in time
        return True
    if isinstance(exc, sa.DBAPIError):
        if exc.connection_invalidated or isinstance(exc, (sa.OperationalError, sa.InterfaceError)):
            return not isinstance(exc.orig, sqlite3.OperationalError) or _sqlite_transient(exc.orig)
        inner = exc.orig.__cause__ if exc.orig is not None else None
        return inner is not None and _asyncpg_transient(inner)
    if isinstance(exc, (ConnectionError, TimeoutError)):  # refused, reset, or a connect that timed out
        return True
    if isinstance(exc, OSError) and exc.errno is not None:  # unreachable host, name resolution, ...
        return True
    return _sqlite_transient(exc) or _asyncpg_transient(exc)
