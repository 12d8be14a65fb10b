"""Engine settings shared by the SQLite and PostgreSQL stores."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncEngine, create_async_engine


def normalise_url(url: str) -> str:
    """Accept the plain ``postgresql://`` form and the ``sqlite+aiosqlite://`` one of early configs.

    SQLite runs on its own thread with the standard library driver (:mod:`rssp.store.sqlite`);
    PostgreSQL runs on asyncpg.
    """
    if url.startswith("sqlite+aiosqlite:///"):
        return "sqlite:///" + url[len("sqlite+aiosqlite:///"):]
    if url.startswith(("postgresql://", "postgres://")):
        return "postgresql+asyncpg://" + url.split("://", 1)[1]
    return url


CONNECT_TIMEOUT_SECONDS = 5.0  # a PostgreSQL server that does not answer a connect: 503 after this, not a hang
POOL_TIMEOUT_SECONDS = 10.0  # waiting for a free pooled connection
COMMAND_TIMEOUT_SECONDS = 60.0  # one statement; none of rssp's take more than milliseconds
SQLITE_BUSY_TIMEOUT_MS = 5000  # another program holding SQLite's lock; the server's processes queue on a flock


def create_postgres_engine(url: str) -> AsyncEngine:
    """A pool of asyncpg connections that fails fast while the server is away and heals by itself.

    A connection broken by a server restart is a "disconnect" to SQLAlchemy: it invalidates
    the whole pool, so the next checkouts connect afresh instead of failing on stale ones.
    """
    return create_async_engine(url, pool_size=10, max_overflow=10, pool_timeout=POOL_TIMEOUT_SECONDS,
                               connect_args={"timeout": CONNECT_TIMEOUT_SECONDS,
                                             "command_timeout": COMMAND_TIMEOUT_SECONDS})


def sqlite_pragmas(dbapi_conn, _record) -> None:  # type: ignore[no-untyped-def]
    """WAL lets readers run beside the one writer; several server processes share the file."""
    dbapi_conn.isolation_level = None  # let SQLAlchemy's "begin" event issue BEGIN itself
    cur = dbapi_conn.cursor()
    cur.execute("PRAGMA journal_mode=WAL")
    cur.execute("PRAGMA synchronous=NORMAL")
    cur.execute("PRAGMA foreign_keys=ON")
    cur.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
    cur.close()


def sqlite_begin(conn) -> None:  # type: ignore[no-untyped-def]
    """Write transactions take the write lock at BEGIN (see :meth:`SqliteStore.write`).

    In WAL mode a deferred transaction that reads and then writes can fail with
    SQLITE_BUSY_SNAPSHOT without waiting; taking the lock first makes it wait instead.
    """
    immediate = conn.get_execution_options().get("sqlite_immediate", False)
    conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")
