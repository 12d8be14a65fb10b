"""The browser flow's steps between the pages: start, login, choose the credential, approve.

Each step re-reads what it relies on from the database (client, credential, session), so a
flow can hop between server processes and a credential disabled or locked mid-flow is refused.
"""

from __future__ import annotations

import time
from urllib.parse import urlencode

from rssp.audit import record, typed_name_actor
from rssp.auth.password_login import LoginBusy, LoginThrottled
from rssp.credentials import Credential, get_credential, list_credentials
from rssp.credentials.pin_change import CHANGED_MEANWHILE, PIN_CHANGE_REQUIRED, hold_pin
from rssp.credentials.policy import CreationPolicy
from rssp.errors import CSCError
from rssp.oauth import par
from rssp.oauth.clients import Client, get_client
from rssp.oauth.codes import issue_code
from rssp.oauth.errors import RedirectableError
from rssp.oauth.request import AuthorizationRequest, NotRedirectable, parse_request, resolve_redirect_uri
from rssp.oauth.sessions import AuthSession, close_session
from rssp.oauth.settings import OAuthSettings
from rssp.services import Services
from rssp.users import User


class ErrorRedirect(Exception):
    """Send the browser back to the client with an error (RFC 6749 §4.1.2.1)."""

    def __init__(self, url: str) -> None:
        super().__init__("error redirect")
        self.url = url


def redirect_url(redirect_uri: str, params: dict[str, str | None]) -> str:
    query = urlencode({k: v for k, v in params.items() if v is not None})
    return f"{redirect_uri}{'&' if '?' in redirect_uri else '?'}{query}"


def error_redirect(req_or_uri: AuthorizationRequest | str, error: RedirectableError,
                   state: str | None = None) -> ErrorRedirect:
    if isinstance(req_or_uri, AuthorizationRequest):
        uri, state = req_or_uri.redirect_uri, req_or_uri.state
    else:
        uri = req_or_uri
    return ErrorRedirect(redirect_url(uri, {"error": error.error, "error_description": error.description,
                                            "state": state}))


async def start(services: Services, settings: OAuthSettings,
                params: dict[str, str]) -> tuple[Client, AuthorizationRequest]:
    """Resolve the client and the request (pushed or in the query)."""
    client_id = params.get("client_id")
    if client_id is None:
        raise NotRedirectable("Missing parameter client_id")
    client = await get_client(services.store, client_id)
    if client is None:
        raise NotRedirectable("Invalid parameter client_id")
    if "request_uri" in params:
        req = await par.redeem(services.store, params["request_uri"], client.client_id)
        if req is None:
            raise NotRedirectable("Invalid parameter request_uri")
        return client, req
    redirect_uri = resolve_redirect_uri(client, params.get("redirect_uri"))
    try:
        if settings.require_par:
            raise RedirectableError("invalid_request", "Pushed authorization request required")
        req = parse_request(params, client, redirect_uri, services.config.security.max_hashes_per_request)
    except RedirectableError as err:
        raise error_redirect(redirect_uri, err, params.get("state")) from None
    return client, req


async def login(services: Services, username: str, password: str, ip: str | None) -> User | None:
    """The signer, checked by the same throttled password check as ``auth/login``.

    Raises :class:`LoginThrottled` while the username or the address is blocked, and
    :class:`LoginBusy` (not audited: load shedding, not a security event) when the process
    has no place for another login check.
    """
    try:
        user = await services.logins.authenticate(username[:128], password, ip)
    except LoginBusy:
        raise
    except LoginThrottled:
        await _audit_login(services, await typed_name_actor(services.config.directory, username), "throttled", ip)
        raise
    actor = user.id if user else await typed_name_actor(services.config.directory, username)
    await _audit_login(services, actor, "ok" if user else "failed", ip)
    return user


async def _audit_login(services: Services, actor: str, outcome: str, ip: str | None) -> None:
    """A failed or throttled attempt's actor is the keyed hash of the typed name, never the name."""
    async with services.store.write() as conn:
        await record(conn, actor=actor, action="oauth.login", outcome=outcome, client_ip=ip)


async def choose_credential(services: Services, req: AuthorizationRequest, user_id: str) -> Credential:
    """The signer's enabled credential the request names (or the first with its qualifier)."""
    grant = req.credential_grant()
    cred: Credential | None = None
    if grant.credential_id is not None:
        cred = await get_credential(services.store, grant.credential_id, user_id)
    else:
        cred = next((c for c in await list_credentials(services.store, user_id)
                     if c.status == "enabled" and c.signature_qualifier == grant.signature_qualifier), None)
    if cred is None:
        raise error_redirect(req, RedirectableError("invalid_request", "Invalid parameter credentialID"))
    if cred.status != "enabled":
        raise error_redirect(req, RedirectableError("invalid_request",
                                                    "The credential identified by credentialID is disabled"))
    if cred.pin_change_required:  # the first-use policy (rssp.credentials.pin_change)
        raise error_redirect(req, RedirectableError("invalid_request", PIN_CHANGE_REQUIRED))
    if grant.num_signatures > cred.multisign:
        raise error_redirect(req, RedirectableError("invalid_request", "Numbers of signatures is too high"))
    if cred.scal == "2" and not grant.hashes:  # SCAL 2: the token is bound to the hashes
        raise error_redirect(req, RedirectableError("invalid_request", "Missing parameter hashes"))
    return cred


async def choose_deletion(services: Services, req: AuthorizationRequest, user_id: str) -> Credential:
    """The signer's credential a ``credential-deletion`` request names (any status but deleted)."""
    credential_id = req.lifecycle.credential_id if req.lifecycle else None
    if credential_id is None:  # parsing refuses a deletion request without one
        raise error_redirect(req, RedirectableError("invalid_request", "Missing parameter credentialID"))
    cred = await get_credential(services.store, credential_id, user_id)
    if cred is None:  # unknown, deleted and someone else's look the same
        raise error_redirect(req, RedirectableError("invalid_request", "Invalid parameter credentialID"))
    return cred


def creation_terms(req: AuthorizationRequest, policy: CreationPolicy) -> tuple[tuple[str, str], ...]:
    """What a ``credential-creation`` approval makes, per the operator's policy (shown on the page)."""
    asked = req.lifecycle.certificate_policy if req.lifecycle else None  # None: the policy's default
    try:
        ca_id = policy.ca_for(asked)
    except CSCError as err:
        raise error_redirect(req, RedirectableError("invalid_request", err.description)) from None
    factors = "PIN + TOTP" if policy.enrols_totp else "PIN"
    return (("certificate_policy", asked or ""), ("ca", ca_id), ("level", f"{policy.level} ({factors})"),
            ("key", policy.key))


async def approve(services: Services, settings: OAuthSettings, session: AuthSession, credential_id: str | None,
                  ip: str | None, kek: bytes | None = None, checked: Credential | None = None) -> str:
    """Consume the session, issue the code, and return where to send the browser.

    ``kek``: a level-3 credential's key-encryption key from the consent's PIN check; the code
    carries it sealed to itself, to be sealed to the access token it is exchanged for.
    ``checked``: the credential as its factors were checked; no code if its PIN changed since.
    """
    req, user_id = session.request, session.signed_in_user()
    async with services.store.write() as conn:
        if checked is not None and not await hold_pin(conn, checked):
            raise error_redirect(req, RedirectableError("access_denied", CHANGED_MEANWHILE))
        if not await close_session(conn, session):
            raise error_redirect(req, RedirectableError("access_denied", "The authorization session has ended"))
        code = await issue_code(conn, req, user_id, credential_id, settings.code_ttl_seconds, kek)
        detail: dict[str, object] = {"clientID": req.client_id, "scope": req.scope, "at": int(time.time())}
        if req.credential is not None:
            detail["numSignatures"] = req.credential.num_signatures
            detail["hashes"] = [d.hex() for d in req.credential.digests]
        await record(conn, actor=user_id, action="oauth.authorize", target=credential_id, outcome="ok",
                     client_ip=ip, detail=detail)
    return redirect_url(req.redirect_uri, {"code": code, "state": req.state})


async def deny(services: Services, session: AuthSession,
               reason: str = "The signer denied the request") -> ErrorRedirect:
    async with services.store.write() as conn:
        await close_session(conn, session)
    return error_redirect(session.request, RedirectableError("access_denied", reason))
