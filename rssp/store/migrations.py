"""Schema migrations: an ordered list of steps and a version table.

Each step runs once, in its own transaction, and records its number, so ``rssp init`` and
``rssp serve`` on an older database bring it up to date. A hand-kept list is enough at this
size; the steps are SQLAlchemy Core operations, so they run on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, Table, select
from sqlalchemy.engine import Connection

from rssp.store import schema

_version_meta = MetaData()
schema_version = Table("schema_version", _version_meta, Column("version", Integer, primary_key=True))


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn)


def _v4_login_throttle(conn: Connection) -> None:
    """Failed password logins per username and address (rssp/auth/throttle.py)."""
    schema.login_throttle.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1_initial),
    (4, _v4_login_throttle),  # 2 and 3 are taken by the OAuth and manages work in progress
]


def _current(conn: Connection) -> int:
    _version_meta.create_all(conn)
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0


def apply_migrations(conn: Connection) -> int:
    current = _current(conn)
    for number, step in MIGRATIONS:
        if number > current:
            step(conn)
            conn.execute(schema_version.insert().values(version=number))
            current = number
    return current
