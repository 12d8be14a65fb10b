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
    Column("ca_id", String(64)),  # the CA that issues the certificate; never who may manage it (manage_enrollments)
    Column("wrapped_key", LargeBinary),  # level 3: the private key, wrapped under the signer's KEK (docs/level3.md)
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
    Column("not_after", Float),  # end of the transaction: extendTransaction never passes it (NULL: not extendable)
    # Level 3 (rssp/sam/sealed_sad.py): an HSM MAC over the row's whole state, the signer's
    # key-encryption key sealed under a key derived from the SAD itself (only its holder opens it),
    # and the bound digests in the row (sorted, concatenated) with a bitmap of those used, so that
    # a spend reads and writes one row whatever the number of hashes (no sad_hashes rows).
    Column("mac", LargeBinary),
    Column("sealed_kek", LargeBinary),
    Column("digests", LargeBinary),
    Column("used_map", LargeBinary),
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

# ---------------------------------------------------------------- OAuth 2.0 authorization server (migration 2)
# Client secrets, codes, request URIs and browser-session cookies are stored as SHA-256 digests
# of 256-bit random values (rssp.auth.secrets), like tokens and SADs.

oauth_clients = Table(
    "oauth_clients",
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("name", String(128), nullable=False),
    Column("secret_hash", String(64)),  # None for a public client
    Column("redirect_uris", Text, nullable=False),  # JSON array, matched exactly
    Column("scopes", Text, nullable=False),  # JSON array
    Column("grant_types", Text, nullable=False),  # JSON array
    Column("status", String(16), nullable=False, default="active"),
    Column("created_at", Float, nullable=False),
)

oauth_sessions = Table(
    "oauth_sessions",
    metadata,
    Column("cookie_hash", String(64), primary_key=True),
    Column("csrf_hash", String(64), nullable=False),
    Column("request", Text, nullable=False),  # the validated authorization request, JSON
    Column("user_id", String(40)),  # set once the signer logged in
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

oauth_codes = Table(
    "oauth_codes",
    metadata,
    Column("code_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("request", Text, nullable=False),  # the authorization request it answers, JSON
    Column("credential_id", String(64)),
    Column("grant_id", String(40), nullable=False),  # the tokens it issued (revoked on replay)
    Column("sealed_kek", LargeBinary),  # level 3: the signer's KEK, sealed under a key derived from the code
    Column("used", Boolean, nullable=False, default=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

par_requests = Table(
    "par_requests",
    metadata,
    Column("uri_hash", String(64), primary_key=True),
    Column("client_id", String(64), nullable=False),
    Column("request", Text, nullable=False),
    Column("used", Boolean, nullable=False, default=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

Index("ix_tokens_client", tokens.c.client_id)

# --- credential lifecycle from CAs (issue 5: extensions/manages, rssp ca add) ------------------

manage_clients = Table(
    "manage_clients",  # one management client per registered CA; the secret only as argon2id
    metadata,
    Column("client_id", String(64), primary_key=True),
    Column("ca_id", String(64), nullable=False, index=True),
    Column("secret_hash", String(255), nullable=False),
    Column("created_at", Float, nullable=False),
)

# Who enrolled a credential: a manage_enrollments row, written only by manages/generateKey, names
# the CA whose RA did; manages/* acts only on credentials with a row of the caller's caID. The
# operator's `rssp credential create` writes none, so no RA can reach those.
manage_enrollments = Table(
    "manage_enrollments",  # the RA-side state of a credential a CA enrolled through manages/*
    metadata,
    Column("credential_id", String(64), ForeignKey("credentials.id"), primary_key=True),
    Column("ca_id", String(64), nullable=False, index=True),
    Column("csr_issued_at", Float),  # manages/authorize gives the CSR once
    Column("linked_at", Float),
    Column("deleted_at", Float),
)

manage_requests = Table(
    "manage_requests",  # requestID idempotency for manages/generateKey and manages/deleteKey
    metadata,
    Column("ca_id", String(64), primary_key=True),
    Column("request_id", String(128), primary_key=True),
    Column("method", String(32), nullable=False),
    Column("params_digest", String(64), nullable=False),
    Column("response", Text),  # JSON; NULL while the first call is still running
    Column("created_at", Float, nullable=False),
)

# --- password-login throttling (rssp/auth/throttle.py, migration 4) ---------------------------

login_throttle = Table(
    "login_throttle",  # failed service logins per username and per client address (keys hashed)
    metadata,
    Column("key", String(64), primary_key=True),
    Column("failures", Integer, nullable=False),
    Column("last_failure", Float, nullable=False),
)
