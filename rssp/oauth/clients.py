"""Registered OAuth clients and client authentication (RFC 6749 §2.3).

A confidential client's secret is 256 bits from ``secrets`` and is stored as its SHA-256, not
as an argon2 hash: argon2's cost protects low-entropy human secrets against guessing, which a
256-bit random value does not need, and a fast digest keeps the token endpoint cheap while
making a database dump useless (the same reasoning as for tokens and SADs). The digest is
compared in constant time. Public clients (no secret) may only use the code flow, where PKCE
binds the code to the instance that asked for it.
"""

from __future__ import annotations

import hmac
import json
import time
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit

from aiohttp import web
from sqlalchemy import select

from rssp.audit import record
from rssp.auth.basic import split_basic
from rssp.auth.secrets import digest, new_id, new_secret
from rssp.oauth.errors import OAuthError, invalid_client, invalid_request
from rssp.oauth.scopes import DEFAULT_CLIENT_SCOPES, SCOPES
from rssp.store import Store
from rssp.store.schema import oauth_clients

GRANT_TYPES = ("authorization_code", "refresh_token", "client_credentials")


@dataclass(frozen=True)
class Client:
    client_id: str
    name: str
    secret_hash: str | None
    redirect_uris: tuple[str, ...]
    scopes: tuple[str, ...]
    grant_types: tuple[str, ...]
    status: str = "active"

    @property
    def public(self) -> bool:
        return self.secret_hash is None


def _check_redirect_uri(uri: str) -> None:
    """Absolute, no fragment (RFC 6749 §3.1.2); plain http only for loopback hosts."""
    parts = urlsplit(uri)
    if parts.scheme not in ("https", "http") or not parts.netloc or parts.fragment or "#" in uri:
        raise ValueError(f"redirect URI {uri!r} must be an absolute http(s) URI without a fragment")
    if parts.scheme == "http" and parts.hostname not in ("127.0.0.1", "localhost", "::1"):
        raise ValueError(f"redirect URI {uri!r}: plain http is allowed only for loopback hosts")


async def add_client(store: Store, name: str, redirect_uris: list[str], *, public: bool = False,
                     scopes: list[str] | None = None, grant_types: list[str] | None = None,
                     actor: str = "operator") -> tuple[Client, str | None]:
    """Register a client; returns it and its secret (shown once; None for a public client).

    ``actor``: the authenticated operator (``operator:NAME``) the audit record names.
    """
    scopes = scopes or list(DEFAULT_CLIENT_SCOPES)
    grant_types = grant_types or (["authorization_code"] if public else ["authorization_code", "refresh_token"])
    if not name or len(name) > 128:
        raise ValueError("a client name is 1-128 characters")
    for uri in redirect_uris:
        _check_redirect_uri(uri)
    if bad := set(scopes) - set(SCOPES):
        raise ValueError(f"unknown scope(s): {', '.join(sorted(bad))}")
    if bad := set(grant_types) - set(GRANT_TYPES):
        raise ValueError(f"unknown grant type(s): {', '.join(sorted(bad))}")
    if public and "client_credentials" in grant_types:
        raise ValueError("a public client cannot use client_credentials")
    if "authorization_code" in grant_types and not redirect_uris:
        raise ValueError("authorization_code needs at least one --redirect-uri")
    secret = None if public else new_secret()
    client = Client(new_id(), name, digest(secret) if secret else None, tuple(redirect_uris), tuple(scopes),
                    tuple(grant_types))
    async with store.write() as conn:
        await conn.execute(oauth_clients.insert().values(
            client_id=client.client_id, name=name, secret_hash=client.secret_hash,
            redirect_uris=json.dumps(redirect_uris), scopes=json.dumps(scopes), grant_types=json.dumps(grant_types),
            status="active", created_at=time.time(),
        ))
        await record(conn, actor=actor, action="oauth.client.add", target=client.client_id, outcome="ok",
                     detail={"name": name, "public": public, "redirectURIs": redirect_uris, "scopes": scopes,
                             "grantTypes": grant_types})
    return client, secret


async def get_client(store: Store, client_id: str) -> Client | None:
    """The active client, or None. Clients live in the database: a new one is seen at once."""
    if len(client_id) > 64:
        return None
    query = select(oauth_clients).where(oauth_clients.c.client_id == client_id)
    row = await store.query(lambda conn: conn.execute(query).first())
    if row is None or row.status != "active":
        return None
    return Client(row.client_id, row.name, row.secret_hash, tuple(json.loads(row.redirect_uris)),
                  tuple(json.loads(row.scopes)), tuple(json.loads(row.grant_types)), row.status)


def _basic(header: str) -> tuple[str, str]:
    """client_secret_basic: both parts are form-urlencoded before Base64 (RFC 6749 §2.3.1)."""
    try:
        client_id, secret = split_basic(header)
    except ValueError:  # NotBasic, MalformedBasic
        raise OAuthError(401, "invalid_client", "Invalid authorization header") from None
    return unquote(client_id.replace("+", " ")), unquote(secret.replace("+", " "))


async def authenticate_client(store: Store, request: web.Request, form: dict[str, str]) -> Client:
    """The calling client, authenticated by client_secret_basic, client_secret_post, or (public) none."""
    header = request.headers.get("Authorization")
    if header is not None and "client_secret" in form:
        raise invalid_request("Only one client authentication method may be used")
    if header is not None:
        client_id, secret = _basic(header)
        if form.get("client_id", client_id) != client_id:
            raise invalid_request("Invalid parameter client_id")
    else:
        if "client_id" not in form:
            raise invalid_request("Missing parameter client_id")
        client_id, secret = form["client_id"], form.get("client_secret")  # type: ignore[assignment]
    client = await get_client(store, client_id)
    if client is None:
        raise invalid_client("Invalid parameter client_id")
    if client.public:
        if secret:
            raise invalid_client("Invalid parameter client_secret")
        return client
    if not secret:
        raise invalid_client("Client authorization required")
    if not hmac.compare_digest(digest(secret), client.secret_hash or ""):
        raise invalid_client("Invalid parameter client_secret")
    return client
