"""Schema migrations: an ordered list of steps and a version table.

Each step runs once, in its own transaction, and records its number, so ``rssp init`` and
``rssp serve`` on an older database bring it up to date. A hand-kept list is enough at this
size; the steps are SQLAlchemy Core operations, so they run on SQLite and PostgreSQL alike.
"""

from __future__ import annotations

from collections.abc import Callable

from sqlalchemy import Column, Integer, MetaData, Table, inspect, select, update
from sqlalchemy.engine import Connection

from rssp.store import schema, schema_factors

_version_meta = MetaData()
schema_version = Table("schema_version", _version_meta, Column("version", Integer, primary_key=True))


def _v1_initial(conn: Connection) -> None:
    schema.metadata.create_all(conn)  # every table, schema_factors' too (imported above)


def _v2_oauth(conn: Connection) -> None:
    """The OAuth 2.0 authorization server's tables (issue 3); a fresh v1 database already has them."""
    for table in (schema.oauth_clients, schema.oauth_sessions, schema.oauth_codes, schema.par_requests):
        table.create(conn, checkfirst=True)
    existing = {ix["name"] for ix in inspect(conn).get_indexes("tokens")}
    if "ix_tokens_client" not in existing:
        next(ix for ix in schema.tokens.indexes if ix.name == "ix_tokens_client").create(conn)


def _v3_manages(conn: Connection) -> None:
    """Management clients, RA enrollment state and requestID idempotency (issue 5)."""
    for table in (schema.manage_clients, schema.manage_enrollments, schema.manage_requests):
        table.create(conn, checkfirst=True)


def _v4_login_throttle(conn: Connection) -> None:
    """Failed password logins per username and address (rssp/auth/throttle.py)."""
    schema.login_throttle.create(conn, checkfirst=True)


def _v6_sad_not_after(conn: Connection) -> None:
    """The absolute end of a signing transaction (#20); SADs issued before it end with their expiry."""
    if "not_after" not in {c["name"] for c in inspect(conn).get_columns("sads")}:
        conn.exec_driver_sql("ALTER TABLE sads ADD COLUMN not_after FLOAT")
    conn.execute(update(schema.sads).where(schema.sads.c.not_after.is_(None))
                 .values(not_after=schema.sads.c.expires_at))


def _v7_jobs(conn: Connection) -> None:
    """Asynchronous signing jobs (#19: operationMode "A", signatures/signPolling)."""
    schema.jobs.create(conn, checkfirst=True)  # with its indexes


def _v8_audit_chain(conn: Connection) -> None:
    """The tamper-evident audit trail (#12): chain columns, the chain registry and the checkpoints.

    Records written before are chained here, in ``id`` order, as the ``genesis`` chain (plain
    SHA-256: a migration has no HSM); the server's first checkpoint seals it with the HSM's MAC.
    """
    # rssp.audit_chain imports rssp.store: not at module level
    from rssp.audit_chain import chain_existing

    have = {c["name"] for c in inspect(conn).get_columns("audit")}
    for name, sql_type in (("chain", "VARCHAR(40)"), ("seq", "INTEGER"), ("hash", "VARCHAR(64)")):
        if name not in have:
            conn.exec_driver_sql(f"ALTER TABLE audit ADD COLUMN {name} {sql_type}")
    for table in (schema.audit_chains, schema.audit_checkpoints):
        table.create(conn, checkfirst=True)
    if "ix_audit_chain_seq" not in {ix["name"] for ix in inspect(conn).get_indexes("audit")}:
        next(ix for ix in schema.audit.indexes if ix.name == "ix_audit_chain_seq").create(conn)
    chain_existing(conn)


def _v9_privileged(conn: Connection) -> None:
    """Operators, configuration seals and credential suspension (JT2A level 3)."""
    for table in (schema.operators, schema.config_seals, schema.credential_suspensions, schema.suspension_requests):
        table.create(conn, checkfirst=True)


def _v10_level3(conn: Connection) -> None:
    """Level 3 (#12): wrapped keys, MACed SADs with a sealed KEK, and the KEK a code carries."""
    binary = "BYTEA" if conn.dialect.name == "postgresql" else "BLOB"
    for table, column in (("credentials", "wrapped_key"), ("sads", "mac"), ("sads", "sealed_kek"),
                          ("sads", "digests"), ("sads", "used_map"), ("oauth_codes", "sealed_kek")):
        if column not in {c["name"] for c in inspect(conn).get_columns(table)}:
            conn.exec_driver_sql(f"ALTER TABLE {table} ADD COLUMN {column} {binary}")


def _v11_factors(conn: Connection) -> None:
    """Signer factors beyond the PIN and TOTP (#14): e-mail, passkeys, OpenID Connect, 202 + handle."""
    for table in (schema_factors.credential_auth, schema_factors.credential_factors, schema_factors.oob_codes,
                  schema_factors.pending_authorizations, schema_factors.factor_states, schema_factors.passkey_links):
        table.create(conn, checkfirst=True)  # with its indexes


def _v12_pin_change(conn: Connection) -> None:
    """credentials/changePIN: its requestIDs, and the first-use flag (docs/level3.md)."""
    if "pin_change_required" not in {c["name"] for c in inspect(conn).get_columns("credentials")}:
        conn.exec_driver_sql("ALTER TABLE credentials ADD COLUMN pin_change_required BOOLEAN NOT NULL DEFAULT FALSE")
    schema.pin_change_requests.create(conn, checkfirst=True)


MIGRATIONS: list[tuple[int, Callable[[Connection], None]]] = [
    (1, _v1_initial),
    (2, _v2_oauth),
    (3, _v3_manages),
    (4, _v4_login_throttle),
    (6, _v6_sad_not_after),
    (7, _v7_jobs),
    (8, _v8_audit_chain),
    (9, _v9_privileged),
    (10, _v10_level3),
    (11, _v11_factors),
    (12, _v12_pin_change),
]


LATEST = MIGRATIONS[-1][0]


def current_version(conn: Connection) -> int:
    """The schema version in force, read without writing anything (0 for an empty database)."""
    if not inspect(conn).has_table("schema_version"):
        return 0
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0


def _current(conn: Connection) -> int:
    _version_meta.create_all(conn)
    return conn.execute(select(schema_version.c.version).order_by(schema_version.c.version.desc())).scalar() or 0


# pg_advisory_xact_lock key: "rssp" in ASCII. Held until the migrating transaction ends.
_MIGRATION_LOCK = 0x72737370


def _lock(conn: Connection) -> None:
    """One migrator at a time across hosts (#18: two hosts starting on an empty database).

    Without it both saw no schema_version table and both created it, and one failed with an
    IntegrityError on PostgreSQL's catalog. The second now waits, then finds the work done.
    SQLite needs nothing here: its write transactions are serial (``BEGIN IMMEDIATE``).
    """
    if conn.dialect.name == "postgresql":
        conn.exec_driver_sql(f"SELECT pg_advisory_xact_lock({_MIGRATION_LOCK})")


def apply_migrations(conn: Connection) -> int:
    _lock(conn)
    current = _current(conn)
    for number, step in MIGRATIONS:
        if number > current:
            step(conn)
            conn.execute(schema_version.insert().values(version=number))
            current = number
    return current
