"""The database tables (SQLAlchemy Core), portable across SQLite and PostgreSQL.

Times are UNIX seconds as floats, so comparisons are plain arithmetic on both engines.
Secrets never appear in clear: tokens and SADs are stored as SHA-256 digests, PINs and
passwords as argon2id hashes, TOTP seeds encrypted by an AES key inside the HSM.
"""

from __future__ import annotations

from sqlalchemy import (
    Boolean,
    Column,
    Float,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    Table,
    Text,
)

metadata = MetaData()

users = Table(
    "users",
    metadata,
    Column("id", String(40), primary_key=True),
    Column("username", String(128), nullable=False, unique=True),
    Column("password_hash", String(255), nullable=False),
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", Float, nullable=False),
)

credentials = Table(
    "credentials",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_id", String(40), ForeignKey("users.id"), nullable=False, index=True),
    Column("description", String(255)),
    Column("level", Integer, nullable=False),
    Column("key_kind", String(8), nullable=False),
    Column("key_len", Integer, nullable=False),
    Column("curve", String(16)),
    Column("hsm_key_id", String(64), nullable=False),
    Column("public_key", LargeBinary, nullable=False),
    Column("certificate", LargeBinary),
    Column("chain", Text, nullable=False, default="[]"),
    Column("status", String(16), nullable=False),
    Column("multisign", Integer, nullable=False, default=1),
    Column("signature_qualifier", String(64)),
    Column("pin_hash", String(255)),
    Column("totp_secret", LargeBinary),
    Column("failed_attempts", Integer, nullable=False, default=0),
    Column("locked", Boolean, nullable=False, default=False),
    Column("totp_last_step", Integer, nullable=False, default=0),
    Column("ca_id", String(64)),
    Column("created_at", Float, nullable=False),
    Column("updated_at", Float, nullable=False),
)

sads = Table(
    "sads",
    metadata,
    Column("sad_hash", String(64), primary_key=True),
    Column("credential_id", String(64), ForeignKey("credentials.id"), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("remaining", Integer, nullable=False),
    Column("expires_at", Float, nullable=False),
    Column("hash_algo", String(16)),
    Column("bound", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

sad_hashes = Table(
    "sad_hashes",
    metadata,
    Column("sad_hash", String(64), ForeignKey("sads.sad_hash", ondelete="CASCADE"), primary_key=True),
    Column("digest", LargeBinary, primary_key=True),
    Column("used", Boolean, nullable=False, default=False),
)

tokens = Table(
    "tokens",
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("kind", String(16), nullable=False),  # access | refresh
    Column("grant_id", String(40), nullable=False, index=True),
    Column("user_id", String(40), nullable=False),
    Column("scope", String(32), nullable=False),
    Column("client_id", String(64)),
    Column("credential_id", String(64)),
    Column("expires_at", Float, nullable=False),
    Column("revoked", Boolean, nullable=False, default=False),
    Column("created_at", Float, nullable=False),
)

audit = Table(
    "audit",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("ts", Float, nullable=False),
    Column("actor", String(128), nullable=False),
    Column("action", String(64), nullable=False),
    Column("target", String(128)),
    Column("outcome", String(32), nullable=False),
    Column("client_ip", String(64)),
    Column("detail", Text),
)

Index("ix_audit_target", audit.c.target)
Index("ix_sads_expires", sads.c.expires_at)

# --- password-login throttling (rssp/auth/throttle.py, migration 4) ---------------------------

login_throttle = Table(
    "login_throttle",  # failed service logins per username and per client address (keys hashed)
    metadata,
    Column("key", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure", Float, nullable=False),
)
