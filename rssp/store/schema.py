"""The database tables (SQLAlchemy Core), portable across SQLite and PostgreSQL.

Times are UNIX seconds as floats, so comparisons are plain arithmetic on both engines.
Secrets never appear in clear: tokens and SADs are stored as SHA-256 digests, PINs and
passwords as argon2id hashes, TOTP seeds encrypted by an AES key inside the HSM.
The tables of the signer factors beyond the PIN and TOTP are in :mod:`rssp.store.schema_factors`,
on the same ``metadata``.
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
    # set by the operator or RA when [security] require_pin_change_on_first_use: no signing until credentials/changePIN
    Column("pin_change_required", Boolean, nullable=False, default=False),
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
    # The hash chain (rssp/audit_chain.py; NULL only before migration 10 chained the old records):
    Column("chain", String(40)),  # the writer's chain: "<writer>.<n>"
    Column("seq", Integer),  # 1, 2, 3, ... within the chain
    Column("hash", String(64)),  # hex: HMAC/SHA-256 over the previous record's hash and this record
)

Index("ix_audit_target", audit.c.target)
Index("ix_audit_chain_seq", audit.c.chain, audit.c.seq, unique=True)

# The registry of chains and the HSM-MACed checkpoints that seal them (rssp/audit_seal.py, migration 10).
# Neither is trusted by `rssp audit verify`: audit_chains only tells the sealer where to look,
# and a checkpoint counts only if its MAC, made inside the HSM, verifies.
audit_chains = Table(
    "audit_chains",
    metadata,
    Column("chain_id", String(40), primary_key=True),
    Column("origin", String(160), nullable=False),  # host:pid of the writer, for the operator
    Column("created_at", Float, nullable=False),
    Column("sealed_seq", Integer, nullable=False, default=0),  # the last seq a checkpoint sealed
    Column("final_seq", Integer),  # set when the writer retired the chain (clean shutdown)
)

audit_checkpoints = Table(
    "audit_checkpoints",
    metadata,
    Column("seq", Integer, primary_key=True, autoincrement=False),  # 1, 2, 3, ...: a gap is a deletion
    Column("ts", Float, nullable=False),
    Column("body", Text, nullable=False),  # canonical JSON: previous MAC and the chain heads it seals
    Column("mac", String(64), nullable=False),  # hex HMAC-SHA-256 of the body by the HSM key rssp-audit-mac
)
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

# --- asynchronous signing jobs (rssp/jobs, migration 7) -----------------------------------------
# No secrets: the SAD was spent when the job was created, and the row holds only what is left to
# do (digests, algorithm, for signDoc the documents), then the result until expires_at.

jobs = Table(
    "jobs",
    metadata,
    Column("id", String(64), primary_key=True),  # the CSC responseID (random, not a secret: polling authenticates)
    Column("kind", String(32), nullable=False),  # signHash | signDoc (rssp.jobs.kinds)
    Column("user_id", String(40), nullable=False),
    Column("client_id", String(64)),  # the OAuth client of the token that asked (None: auth/login)
    Column("credential_id", String(64)),
    Column("payload", Text, nullable=False),  # JSON; emptied once the job is finished
    Column("response_uri", Text),
    Column("client_ip", String(64)),
    Column("status", String(16), nullable=False),  # pending | running | done | failed
    Column("attempts", Integer, nullable=False, default=0),
    Column("lease_until", Float),  # a running job whose lease passed may be claimed again
    Column("claim_token", String(64)),  # the claimant's: only it may write the result
    Column("claimed_by", String(128)),  # host:pid of the last claimant (for operators)
    Column("result", Text),  # JSON, status done
    Column("error", Text),  # JSON {status, error, error_description}, status failed
    Column("created_at", Float, nullable=False),
    Column("expires_at", Float, nullable=False),  # created_at + validity_period: then the row is deleted
    Column("finished_at", Float),
)

Index("ix_jobs_claim", jobs.c.status, jobs.c.lease_until)
Index("ix_jobs_expires", jobs.c.expires_at)
# --- privileged users, the configuration seal, suspension (JT2A level 3, migration 9) --------

operators = Table(
    "operators",  # privileged users (rssp admin add): never signers, never logged in to the CSC API
    metadata,
    Column("id", String(40), primary_key=True),
    Column("name", String(64), nullable=False, unique=True),  # kept when removed: names stay audit identities
    Column("password_hash", String(255), nullable=False),  # argon2id
    Column("totp_secret", LargeBinary, nullable=False),  # AES-GCM by the HSM's TOTP key, AAD "operator:<id>"
    Column("status", String(16), nullable=False),  # active | removed
    Column("created_by", String(160), nullable=False),
    Column("created_at", Float, nullable=False),
)

config_seals = Table(
    "config_seals",  # every seal of rssp.toml (rssp/config_seal.py); the newest is the one in force
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("seal", String(64), nullable=False),  # the HSM MAC over the sealed files' MACs
    Column("actor", String(160), nullable=False),
    Column("sealed_at", Float, nullable=False),
)

credential_suspensions = Table(
    "credential_suspensions",  # why a credential is suspended (credentials.status = 'suspended') and by whom
    metadata,
    Column("credential_id", String(64), ForeignKey("credentials.id"), primary_key=True),
    Column("by", String(16), nullable=False),  # signer | operator: a signer cannot lift an operator's suspension
    Column("actor", String(160), nullable=False),
    Column("reason", String(255)),
    Column("suspended_at", Float, nullable=False),
)

suspension_requests = Table(
    "suspension_requests",  # requestID of every suspend/resume: a replay gets the first answer, changes nothing
    metadata,
    Column("requester", String(160), primary_key=True),  # the signer's user ID, or operator:NAME
    Column("request_id", String(128), primary_key=True),
    Column("credential_id", String(64), nullable=False),
    Column("action", String(16), nullable=False),  # suspend | resume
    Column("response", Text, nullable=False),  # JSON
    Column("created_at", Float, nullable=False),
)

pin_change_requests = Table(
    "pin_change_requests",  # requestID of every credentials/changePIN: a replay changes nothing
    metadata,
    Column("requester", String(160), primary_key=True),  # the signer's user ID
    Column("request_id", String(128), primary_key=True),
    Column("credential_id", String(64), nullable=False),
    Column("created_at", Float, nullable=False),
)
