"""Hot-path statements that SQLite runs on its own driver, compiled once.

Why: under single-hash signHash load a worker is bound by the Python time its threads hold the
GIL (about 1 ms per call over the event loop, the SQLite thread and the HSM thread).
SQLAlchemy's per-execution work (execution context, parameter and result processing) was about
half of the SQLite thread's share, more than SQLite itself took to run the statements. The
statements stay SQLAlchemy Core, one definition for both backends: on SQLite each is compiled
once to its SQL text and executed on the DBAPI cursor of the same connection, inside the same
transaction and savepoint; on PostgreSQL it goes through SQLAlchemy as before.

Only plain statements qualify: no expanding ``IN`` (its SQL depends on the list length) and
no column types whose values need conversion (``Boolean`` results come back as 0/1, which the
callers only test for truth).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from sqlalchemy.engine import Connection
from sqlalchemy.sql import Delete, Insert, Select, Update


class Prepared:
    def __init__(self, statement: Select[Any] | Insert | Update | Delete,
                 column_keys: Sequence[str] | None = None) -> None:
        self.statement = statement
        self._column_keys = list(column_keys) if column_keys is not None else None
        self._sqlite: tuple[str, tuple[str, ...], dict[str, Any]] | None = None

    def _compiled(self, conn: Connection) -> tuple[str, tuple[str, ...], dict[str, Any]]:
        if self._sqlite is None:
            compiled = self.statement.compile(dialect=conn.dialect, column_keys=self._column_keys)
            if compiled.positiontup is None:
                raise TypeError("a prepared statement needs positional parameters")
            self._sqlite = (compiled.string, tuple(compiled.positiontup), dict(compiled.params))
        return self._sqlite

    def _args(self, conn: Connection, params: Mapping[str, Any]) -> tuple[str, list[Any]]:
        sql, order, defaults = self._compiled(conn)
        return sql, [params[name] if name in params else defaults[name] for name in order]

    def rows(self, conn: Connection, params: Mapping[str, Any]) -> list[Mapping[str, Any]]:
        """The result rows (a query, or RETURNING) as mappings of column name to value."""
        if conn.dialect.name != "sqlite":
            return [dict(row._mapping) for row in conn.execute(self.statement, params)]
        sql, args = self._args(conn, params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, args)
            names = [d[0] for d in cursor.description or ()]
            return [dict(zip(names, row, strict=True)) for row in cursor.fetchall()]
        finally:
            cursor.close()

    def first(self, conn: Connection, params: Mapping[str, Any]) -> Mapping[str, Any] | None:
        found = self.rows(conn, params)
        return found[0] if found else None

    def run(self, conn: Connection, params: Mapping[str, Any]) -> int:
        """Execute a statement without result rows; the number of rows it changed."""
        if conn.dialect.name != "sqlite":
            return int(conn.execute(self.statement, params).rowcount)
        sql, args = self._args(conn, params)
        cursor = conn.connection.driver_connection.cursor()  # type: ignore[union-attr]
        try:
            cursor.execute(sql, args)
            return int(cursor.rowcount)
        finally:
            cursor.close()
