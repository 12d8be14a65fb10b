"""Token revocation, refresh-token reuse, login audit records and the OAuth session cookie
(issue #20, findings 6, 9 and 11), against the running server on both database backends.

- Every way of revoking a token removes what it carries: a credential-scoped OAuth token is its
  own SAD, and must stop signing as ``SAD`` (beside a service token) as well as as Bearer.
- A rotated refresh token presented again revokes its whole grant (RFC 9700 §4.14.2).
- What a caller typed as a user name (or management client ID) before authenticating never
  reaches the audit trail in clear; a keyed hash of it does, so failures can be correlated.
- Logging in on the OAuth pages replaces the session cookie: a pre-login session id is dead.
"""

from __future__ import annotations

import json
import secrets
import time

import aiohttp
import pytest
from sqlalchemy import select
from yarl import URL

from client import ECDSA_SHA256, digest
from oauth_helpers import (
    FormBrowser, add_client, auth_params, credential_params, credential_token, exchange, get_code, pkce,
    session_cookie, token_request,
)
from rssp.audit import load_audit_key, typed_actor
from rssp.auth.secrets import digest as secret_digest
from rssp.store import open_store
from rssp.store.schema import sads, tokens

REDIRECT = "https://sa.example/callback"


@pytest.fixture
def sa(dep):
    """A confidential client with the code and refresh grants, registered once per deployment."""
    cache = dep.__dict__.setdefault("_token_security_clients", {})
    if "sa" not in cache:
        cache["sa"] = add_client(dep, "Token security portal", REDIRECT, "--grant-types", "authorization_code",
                                 "refresh_token")
    return cache["sa"]


def audit_records(dep) -> list[dict]:
    return dep.rssp_json("audit", "list", str(dep.directory), "--limit", "100000")


def typed_name(dep, name: str) -> str:
    """The actor a failed attempt with this typed name is recorded under (the operator's check)."""
    return typed_actor(load_audit_key(dep.directory), name)


# ---------------------------------------------------------------------------- finding 6: one revocation path

async def _revoke(route: str, token: str, service: str, http, dep, csc, sa) -> int:
    """Revoke ``token`` the signer's way (CSC ``auth/revoke``) or the client's (``oauth2/revoke``)."""
    if route == "auth/revoke":
        return (await csc.call("auth/revoke", {"token": token, "token_type_hint": "access_token"}, service))[0]
    return (await token_request(http, dep, sa, {"token": token}, endpoint="revoke"))[0]


@pytest.mark.parametrize("route", ["auth/revoke", "oauth2/revoke"])
async def test_a_revoked_credential_token_signs_no_more(route, http, dep, csc, sa):
    cred = dep.creds["p256"]
    h1, h2 = (digest(f"{route} {i} {time.time()}".encode()) for i in range(2))
    token = (await credential_token(http, dep, sa, cred, [h1, h2]))["access_token"]
    service = await csc.token()
    # before: the credential token signs when sent as SAD beside any service token of its user
    status, body = await csc.sign(service, cred, token, [h1], ECDSA_SHA256)
    assert status == 200, body
    assert await _revoke(route, token, service, http, dep, csc, sa) == 204
    status, err = await csc.sign(service, cred, token, [h2], ECDSA_SHA256)
    assert (status, err["error_description"]) == (400, "Invalid parameter SAD")
    status, err = await csc.sign(await csc.token(), cred, token, [h2], ECDSA_SHA256)  # any other service token
    assert (status, err["error_description"]) == (400, "Invalid parameter SAD")
    status, err = await csc.sign(token, cred, token, [h2], ECDSA_SHA256)  # and as Bearer
    assert (status, err["error"]) == (401, "expired_token")


async def test_nothing_extended_from_a_credential_token_outlives_its_revocation(http, dep, csc, sa):
    cred = dep.creds["p256"]
    h = digest(f"extend {time.time()}".encode())
    token = (await credential_token(http, dep, sa, cred, [h]))["access_token"]
    service = await csc.token()
    status, extended = await csc.call("credentials/extendTransaction", {"credentialID": cred.id, "SAD": token},
                                      service)
    assert await _revoke("auth/revoke", token, service, http, dep, csc, sa) == 204
    if status == 200:  # extending is allowed only if revoking the token takes the new SAD with it
        status, _ = await csc.sign(service, cred, extended["SAD"], [h], ECDSA_SHA256)
        assert status == 400


async def test_credential_token_and_its_sad_row_expire_together(http, dep, sa):
    cred = dep.creds["p256"]
    token = (await credential_token(http, dep, sa, cred, [digest(f"expiry {time.time()}".encode())]))["access_token"]
    store = open_store(dep.db_url)
    try:
        async with store.read() as conn:
            token_expiry = (await conn.execute(select(tokens.c.expires_at).where(
                tokens.c.token_hash == secret_digest(token)))).scalar()
            sad_expiry = (await conn.execute(select(sads.c.expires_at).where(
                sads.c.sad_hash == secret_digest(token)))).scalar()
    finally:
        await store.close()
    # the row never outlives the token: sent as SAD after the token expired, it is refused too
    assert sad_expiry == token_expiry


# ---------------------------------------------------------------------------- finding 9: typed names in the audit

async def test_csc_login_with_a_password_as_user_name_keeps_it_out_of_the_audit(http, dep):
    typed = f"Pw-{secrets.token_urlsafe(12)}"  # what a user types into the name field by mistake
    url = f"{dep.base}/csc/v2/auth/login"
    for _ in range(6):  # five failures, then the name is throttled
        async with http.post(url, json={}, headers={"Authorization": aiohttp.encode_basic_auth(typed, "x")}) as resp:
            last = resp.status
    assert last == 429
    records = audit_records(dep)
    assert typed not in json.dumps(records, ensure_ascii=False)
    mine = [r for r in records if r["action"] == "auth.login" and r["actor"] == typed_name(dep, typed)]
    assert [r["outcome"] for r in mine] == ["failed"] * 5 + ["throttled"]  # still correlated, by keyed hash


async def test_oauth_login_page_with_a_password_as_user_name_keeps_it_out_of_the_audit(dep, sa):
    typed = f"Pw-{secrets.token_urlsafe(12)}"
    _, challenge = pkce()
    async with FormBrowser(dep) as browser:
        assert (await browser.authorize(auth_params(sa, challenge, scope="service"))).status == 200
        page = await browser.post("login", {"username": typed, "password": "x"})
        assert page.status == 400
    records = audit_records(dep)
    assert typed not in json.dumps(records, ensure_ascii=False)
    assert [r["outcome"] for r in records
            if r["action"] == "oauth.login" and r["actor"] == typed_name(dep, typed)] == ["failed"]


async def test_manages_login_with_a_secret_as_client_id_keeps_it_out_of_the_audit(http, dep):
    typed = f"Secret-{secrets.token_urlsafe(12)}"
    async with http.post(f"{dep.base}/csc/v2/manages/login", json={},
                         headers={"Authorization": aiohttp.encode_basic_auth(typed, "x")}) as resp:
        assert resp.status == 400
    records = audit_records(dep)
    assert typed not in json.dumps(records, ensure_ascii=False)
    assert [r["outcome"] for r in records
            if r["action"] == "manages.login" and r["actor"] == typed_name(dep, typed)] == ["failed"]


# ---------------------------------------------------------------------------- finding 11: refresh reuse, fixation

async def test_reused_csc_refresh_token_revokes_its_grant(http, dep, csc):
    first = await csc.login("alice", remember=True)
    status, second = await csc.call("auth/login", {"refresh_token": first["refresh_token"]})
    assert status == 200, second
    assert (await csc.call("credentials/list", {}, second["access_token"]))[0] == 200
    # the rotated token comes back (a thief, or the client it was stolen from): refused, grant revoked
    status, err = await csc.call("auth/login", {"refresh_token": first["refresh_token"]})
    assert (status, err["error_description"]) == (400, "Invalid refresh_token")
    status, err = await csc.call("credentials/list", {}, second["access_token"])
    assert (status, err["error"]) == (401, "expired_token")
    status, err = await csc.call("auth/login", {"refresh_token": second["refresh_token"]})
    assert (status, err["error_description"]) == (400, "Invalid refresh_token")
    # another login of the same user is not touched
    assert (await csc.call("credentials/list", {}, await csc.token()))[0] == 200
    assert "token.refresh.reused" in {r["action"] for r in audit_records(dep)}


async def test_reused_oauth_refresh_token_revokes_its_grant(http, dep, csc, sa):
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(sa, challenge, scope="service"))
    status, first = await exchange(http, dep, sa, code, verifier)
    assert status == 200, first
    form = {"grant_type": "refresh_token", "refresh_token": first["refresh_token"]}
    status, second = await token_request(http, dep, sa, form)
    assert status == 200, second
    assert (await csc.call("credentials/list", {}, second["access_token"]))[0] == 200
    status, err = await token_request(http, dep, sa, form)
    assert (status, err["error"]) == (400, "invalid_grant")
    status, err = await csc.call("credentials/list", {}, second["access_token"])
    assert (status, err["error"]) == (401, "expired_token")
    status, err = await token_request(http, dep, sa, {"grant_type": "refresh_token",
                                                      "refresh_token": second["refresh_token"]})
    assert (status, err["error"]) == (400, "invalid_grant")


async def test_login_replaces_the_session_cookie(dep, sa):
    cred = dep.creds["p256"]
    _, challenge = pkce()
    params = auth_params(sa, challenge, **credential_params(cred, [digest(f"fixation {time.time()}".encode())]))
    async with FormBrowser(dep) as browser:
        assert (await browser.authorize(params)).status == 200
        before, before_csrf = session_cookie(browser), browser.csrf
        page = await browser.login()
        assert page.status == 200, page.text  # the consent page
        after = session_cookie(browser)
        assert before and after and after != before
        assert browser.csrf != before_csrf
        # whoever kept (or planted) the pre-login session id holds nothing now
        async with FormBrowser(dep) as planted:
            planted.session.cookie_jar.update_cookies({"rssp_oauth_session": before},
                                                      response_url=URL(f"{dep.base}/csc/v2/oauth2/"))
            planted.csrf = before_csrf
            assert (await planted.consent(cred)).status == 403
            assert (await planted.login()).status == 403
        page = await browser.consent(cred)
        assert page.status == 303 and "code=" in (page.location or "")
