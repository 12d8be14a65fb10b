"""The token endpoint's grants and the revocation endpoint (RFC 6749 §4.1.3, §4.4, §6; RFC 7009).

Service tokens (a code with scope ``service``, a refresh token, client credentials) never
authorize signing. A code with scope ``credential`` yields an access token bound to the client,
the signer, one credential, N signatures and (SCAL 2) the exact digests: its grant is stored as
a SAD keyed by the token's digest (:func:`rssp.sam.sad.insert_token_sad`), so signHash spends
it through the same atomic path as a SAD from ``credentials/authorize``. For a level-3
credential the code carries the signer's KEK (:mod:`rssp.oauth.codes`); the grant row then gets
the SAM's MAC and the KEK sealed to the access token (:mod:`rssp.sam.sealed_sad`).
Codes with scope ``credential-creation`` / ``credential-deletion`` (CSC v2.2) yield a short-lived
token for ``credentials/create`` (one credential) / ``credentials/delete`` (the approved one)
and nothing else: no refresh token, no SAD.
"""

from __future__ import annotations

from typing import Any


from rssp.algorithms import hash_from_oid
from rssp.audit import record
from rssp.auth.tokens import IssuedTokens, revoke_token
from rssp.auth.secrets import new_id
from rssp.oauth.clients import Client
from rssp.oauth.codes import RedeemedCode, redeem_code
from rssp.oauth.errors import OAuthError, invalid_grant, invalid_request, invalid_scope, unauthorized_client
from rssp.oauth.pkce import verifier_matches
from rssp.oauth.rar import same_details
from rssp.oauth.scopes import CREATION, CREDENTIAL, DELETION
from rssp.oauth.settings import OAuthSettings
from rssp.sam.sad import SadGrant, insert_token_sad
from rssp.sam.sealed_sad import insert_token_sad_sealed
from rssp.services import Services
from rssp.store import Conn
from rssp.store.schema import tokens

CLIENT_USER_PREFIX = "client:"  # the subject of a client_credentials token: the client itself


def _needs_grant_type(client: Client, grant_type: str) -> None:
    if grant_type not in client.grant_types:
        raise unauthorized_client()


def _token_body(issued: Any, scope: str) -> dict[str, Any]:
    return {**issued.body(), "token_type": "Bearer", "scope": scope}


def _check_code(redeemed: RedeemedCode | None, client: Client, form: dict[str, str]) -> OAuthError | None:
    """Why the spent code gives no tokens, or None. Pure checks: they run inside the spend."""
    if redeemed is None or redeemed.expired:
        return invalid_grant("Authorization code is invalid or expired")
    if redeemed.client_id != client.client_id:
        return invalid_grant("Invalid parameter code")
    req, verifier = redeemed.request, form.get("code_verifier")
    if form["redirect_uri"] != req.redirect_uri:
        return invalid_grant("redirect_uri parameter does not match redirect_uri parameter of authorization request")
    if not verifier_matches(verifier, req.code_challenge):
        return invalid_grant("Missing parameter code_verifier" if verifier is None
                             else "Invalid parameter code_verifier")
    details = form.get("authorization_details")
    if details is not None and (req.authorization_details is None
                                or not same_details(details, req.authorization_details)):
        return invalid_grant("authorization_details do not match the authorization request")
    return None


async def _issue_for_code(services: Services, settings: OAuthSettings, conn: Conn, client: Client,
                          redeemed: RedeemedCode, ip: str | None) -> IssuedTokens:
    req = redeemed.request
    if req.scope == "credential":
        cred, credential_id = req.credential_grant(), redeemed.credential_id
        if credential_id is None:  # a credential-scope code is issued for one credential
            raise ValueError("a credential-scope code without its credential")
        issued = await services.tokens.issue_scoped(
            conn, user_id=redeemed.user_id, scope="credential", client_id=client.client_id,
            grant_id=redeemed.grant_id, ttl=settings.credential_token_ttl_seconds,
            credential_id=credential_id,
        )
        hash_name = hash_from_oid(cred.hash_oid) if cred.hash_oid else None
        grant = SadGrant(redeemed.user_id, credential_id, cred.num_signatures, hash_name, cred.digests)
        if redeemed.kek is not None:
            await insert_token_sad_sealed(conn, services.hsm, issued.access_token, grant, issued.expires_at,
                                          redeemed.kek)
        else:
            await insert_token_sad(conn, issued.access_token, grant, issued.expires_at)
    elif req.scope in (CREATION, DELETION):  # one credential made or deleted; no refresh, no SAD
        issued = await services.tokens.issue_scoped(
            conn, user_id=redeemed.user_id, scope=req.scope, client_id=client.client_id,
            grant_id=redeemed.grant_id, ttl=settings.credential_token_ttl_seconds,
            credential_id=redeemed.credential_id if req.scope == DELETION else None,
        )
    else:
        refresh_ttl = settings.refresh_token_ttl_seconds if "refresh_token" in client.grant_types else None
        issued = await services.tokens.issue_scoped(
            conn, user_id=redeemed.user_id, scope="service", client_id=client.client_id,
            grant_id=redeemed.grant_id, ttl=settings.service_token_ttl_seconds, refresh_ttl=refresh_ttl,
        )
    await record(conn, actor=redeemed.user_id, action="oauth.token", target=redeemed.credential_id,
                 outcome="ok", client_ip=ip, detail={"clientID": client.client_id, "scope": req.scope,
                                                     "grant": "authorization_code"})
    return issued


async def exchange_code(services: Services, settings: OAuthSettings, client: Client, form: dict[str, str],
                        ip: str | None) -> dict[str, Any]:
    """Spend the code and issue its tokens in one transaction; a failed check still spends it."""
    _needs_grant_type(client, "authorization_code")
    if "code" not in form:
        raise invalid_request("Missing parameter code")
    if "redirect_uri" not in form:
        raise invalid_request("Missing parameter redirect_uri")
    async with services.store.write() as conn:
        redeemed = await redeem_code(conn, form["code"], ip)
        refused = _check_code(redeemed, client, form)
        if refused is None and redeemed is not None:  # _check_code refuses an unknown code (None)
            issued = await _issue_for_code(services, settings, conn, client, redeemed, ip)
    if refused is not None or redeemed is None:  # after the commit: the code stays spent, a replay stays revoked
        raise refused or invalid_grant("Authorization code is invalid or expired")
    req = redeemed.request
    body = _token_body(issued, req.scope)
    if req.scope == CREATION and req.authorization_details is not None:
        body["authorization_details"] = req.authorization_details
    if req.scope in (CREDENTIAL, DELETION):
        body["credentialID"] = redeemed.credential_id
        if req.authorization_details is not None:
            body["authorization_details"] = [{**e, "credentialID": redeemed.credential_id}
                                             for e in req.authorization_details]
    return body


async def refresh(services: Services, settings: OAuthSettings, client: Client, form: dict[str, str],
                  ip: str | None) -> dict[str, Any]:
    """Rotate: the presented refresh token is spent and a new pair is issued in the same grant."""
    _needs_grant_type(client, "refresh_token")
    token = form.get("refresh_token")
    if token is None:
        raise invalid_request("Missing parameter refresh_token")
    if len(token) > 256:
        raise invalid_grant("Invalid parameter refresh_token")
    async with services.store.write() as conn:
        rotated = await services.tokens.rotate_refresh(conn, token, client.client_id, ip)
        if rotated is not None:
            if rotated.scope != "service":  # only service tokens are ever refreshable (CSC §5.1)
                raise invalid_grant("Invalid parameter refresh_token")
            issued = await services.tokens.issue_scoped(
                conn, user_id=rotated.user_id, scope="service", client_id=client.client_id,
                grant_id=rotated.grant_id, ttl=settings.service_token_ttl_seconds,
                refresh_ttl=settings.refresh_token_ttl_seconds,
            )
            await record(conn, actor=rotated.user_id, action="oauth.token", outcome="ok", client_ip=ip,
                         detail={"clientID": client.client_id, "scope": "service", "grant": "refresh_token"})
    if rotated is None:  # after the commit: a reused token's grant stays revoked
        raise invalid_grant("Invalid parameter refresh_token")
    return _token_body(issued, "service")


async def client_credentials(services: Services, settings: OAuthSettings, client: Client, form: dict[str, str],
                             ip: str | None) -> dict[str, Any]:
    _needs_grant_type(client, "client_credentials")
    if client.public:
        raise unauthorized_client()
    if form.get("scope", "service") != "service" or "service" not in client.scopes:
        raise invalid_scope()
    subject = CLIENT_USER_PREFIX + client.client_id
    async with services.store.write() as conn:
        issued = await services.tokens.issue_scoped(
            conn, user_id=subject, scope="service", client_id=client.client_id, grant_id=new_id(),
            ttl=settings.client_token_ttl_seconds,
        )
        await record(conn, actor=subject, action="oauth.token", outcome="ok", client_ip=ip,
                     detail={"clientID": client.client_id, "scope": "service", "grant": "client_credentials"})
    return _token_body(issued, "service")


async def revoke(services: Services, client: Client, form: dict[str, str], ip: str | None) -> None:
    """RFC 7009: a token of this client is revoked (a refresh token with its grant); others are ignored."""
    token = form.get("token")
    if token is None:
        raise invalid_request("Missing parameter token")
    hint = form.get("token_type_hint")
    if hint is not None and hint not in ("access_token", "refresh_token"):
        raise invalid_request("Invalid parameter token_type_hint")
    async with services.store.write() as conn:
        row = await revoke_token(conn, token, tokens.c.client_id == client.client_id)
        if row is None:  # unknown or another client's: nothing to do, nothing to reveal (§2.2)
            return
        await record(conn, actor=row.user_id, action="oauth.revoke", outcome="ok", client_ip=ip,
                     detail={"clientID": client.client_id, "kind": row.kind})
