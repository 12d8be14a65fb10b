"""The tables of the signer factors beyond the PIN and TOTP (#14: rssp/factors, migration 11).

On :data:`rssp.store.schema.metadata`, like every other table; their own module because they
are one area's (e-mailed codes and links, passkeys, OpenID Connect, the 202 + handle flow).
No secret in clear: codes and link tokens are stored as HSM MACs or SHA-256 digests of random
values; the factor set of a credential carries an HSM MAC over its expression and references,
so an edit in the database (another e-mail address, another passkey key) is refused.
"""

from __future__ import annotations

from sqlalchemy import Boolean, Column, Float, ForeignKey, Index, Integer, LargeBinary, String, Table, Text

from rssp.store.schema import metadata


credential_auth = Table(
    "credential_auth",  # a credential's factor expression (no row: the PIN [AND OTP] of before)
    metadata,
    Column("credential_id", String(64), ForeignKey("credentials.id"), primary_key=True),
    Column("expression", String(255), nullable=False),  # e.g. "PIN AND (EMAIL_OTP OR EMAIL_LINK)"
    Column("mac", LargeBinary, nullable=False),  # HSM MAC over the expression and every factor row's reference
    Column("updated_at", Float, nullable=False),
)

credential_factors = Table(
    "credential_factors",  # the e-mail address, OpenID Provider subject and passkeys of a credential
    metadata,
    Column("id", String(40), primary_key=True),
    Column("credential_id", String(64), ForeignKey("credentials.id"), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # email | oidc | fido
    Column("reference", String(512), nullable=False),  # address | issuer | WebAuthn credential ID (base64url)
    Column("subject", String(255)),  # oidc: the subject at that issuer
    Column("public_key", LargeBinary),  # fido: the COSE public key
    Column("sign_count", Integer, nullable=False, default=0),  # fido: the authenticator's counter (clone detection)
    Column("created_at", Float, nullable=False),
)
Index("ix_credential_factors_ref", credential_factors.c.kind, credential_factors.c.reference)

oob_codes = Table(
    "oob_codes",  # one-time codes and approval links sent out of band; also the send rate limit's record
    metadata,
    Column("id", String(40), primary_key=True),
    Column("credential_id", String(64), nullable=False, index=True),
    Column("user_id", String(40), nullable=False, index=True),
    Column("kind", String(16), nullable=False),  # code | link
    Column("code_mac", String(64), nullable=False),  # hex HSM MAC over the code and what it is bound to
    Column("used", Boolean, nullable=False, default=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

pending_authorizations = Table(
    "pending_authorizations",  # credentials/authorize answered 202: waiting for the signer's approval
    metadata,
    Column("handle_hash", String(64), primary_key=True),
    Column("link_hash", String(64), nullable=False, unique=True),  # the e-mailed approval link's token
    Column("credential_id", String(64), nullable=False),
    Column("user_id", String(40), nullable=False),
    Column("client_id", String(64)),  # the OAuth client of the token that asked (None: auth/login)
    Column("request", Text, nullable=False),  # JSON: numSignatures, hash algorithm, digests, description
    Column("status", String(16), nullable=False),  # pending | approved | denied | done
    Column("sealed_kek", LargeBinary),  # level 3: the KEK from the PIN check, sealed under the handle
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)

factor_states = Table(
    "factor_states",  # single-use ceremony state: WebAuthn challenges, OpenID Connect attempts and results
    metadata,
    Column("key", String(64), primary_key=True),  # SHA-256 of a random value or of "<purpose>:<session>"
    Column("purpose", String(32), nullable=False),
    Column("data", Text, nullable=False),  # JSON: a WebAuthn nonce, or an OpenID attempt's nonce and PKCE verifier
    # (worthless without the provider's code, which only the browser gets; gone at first use or expiry)
    Column("expires_at", Float, nullable=False),
)

passkey_links = Table(
    "passkey_links",  # registration links for a passkey (manages/linkEid fido, rssp credential create --passkey)
    metadata,
    Column("token_hash", String(64), primary_key=True),
    Column("credential_id", String(64), ForeignKey("credentials.id"), nullable=False),
    Column("used", Boolean, nullable=False, default=False),
    Column("expires_at", Float, nullable=False),
    Column("created_at", Float, nullable=False),
)
