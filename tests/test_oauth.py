"""OAuth 2.0 authorization server over real HTTP (both database backends).

The form-level browser (oauth_helpers.FormBrowser) drives the login and consent pages; the
real-browser runs are in test_oauth_browser.py. Clients are registered with the operator's CLI
against the running server's instance: the server sees them at once (they live in the DB).
"""

from __future__ import annotations

import base64
import json
import time

import aiohttp
import pytest
from sqlalchemy import select, update

from client import ECDSA_SHA256, SHA256, b64, digest
from oauth_helpers import (
    FormBrowser, auth_params, credential_params, exchange, get_code, pkce, query_of, token_request,
    verify_signature,
)
from oauth_helpers import credential_token as _credential_token
from rssp.auth.secrets import digest as secret_digest
from rssp.store import open_store
from rssp.store.schema import credentials, oauth_clients, tokens
from test_csc_flow import certificate

REDIRECT = "https://sa.example/callback"
OTHER_REDIRECT = "https://sa.example/other"


@pytest.fixture
def clients(dep):
    """Three clients per deployment: confidential, a second confidential one, and a public one."""
    cache = dep.__dict__.setdefault("_oauth_clients", {})
    if not cache:
        from oauth_helpers import add_client

        cache["sa"] = add_client(dep, "Signing portal", REDIRECT, "--redirect-uri", OTHER_REDIRECT, "--grant-types",
                                 "authorization_code", "refresh_token", "client_credentials")
        cache["other"] = add_client(dep, "Other app", REDIRECT)
        cache["public"] = add_client(dep, "Wallet", REDIRECT, "--public")
    return cache


async def _sign(csc, token, cred, digests, sad=None):
    body = {"credentialID": cred.id, "hashes": [b64(d) for d in digests], "hashAlgorithmOID": SHA256,
            "signAlgo": ECDSA_SHA256}
    if sad:
        body["SAD"] = sad
    return await csc.call("signatures/signHash", body, token)


# ---------------------------------------------------------------------------- discovery

async def test_metadata_and_info_advertise_the_server(http, dep, csc):
    async with http.get(f"{dep.base}/.well-known/oauth-authorization-server") as resp:
        assert resp.status == 200
        meta = await resp.json()
    assert meta["issuer"] == dep.base
    assert meta["authorization_endpoint"] == f"{dep.base}/csc/v2/oauth2/authorize"
    assert meta["token_endpoint"] == f"{dep.base}/csc/v2/oauth2/token"
    assert meta["pushed_authorization_request_endpoint"].endswith("/csc/v2/oauth2/pushed_authorize")
    assert meta["revocation_endpoint"].endswith("/csc/v2/oauth2/revoke")
    assert meta["code_challenge_methods_supported"] == ["S256"]
    assert meta["response_types_supported"] == ["code"]
    assert "credential" in meta["authorization_details_types_supported"]
    status, info = await csc.call("info", {})
    assert status == 200
    assert info["oauth2Issuer"] == meta["issuer"] and "oauth2" not in info
    assert {"oauth2code", "oauth2client"} <= set(info["authType"])
    assert info["supportsRar"] is True


async def test_client_secret_is_stored_hashed(dep, clients):
    store = open_store(dep.db_url)
    try:
        async with store.read() as conn:
            row = (await conn.execute(select(oauth_clients).where(
                oauth_clients.c.client_id == clients["sa"].client_id))).first()
    finally:
        await store.close()
    assert row.secret_hash == secret_digest(clients["sa"].secret) and clients["sa"].secret not in row.secret_hash


# ---------------------------------------------------------------------------- service scope

async def test_service_code_flow_refresh_rotation_and_revoke(http, dep, csc, clients):
    client = clients["sa"]
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(client, challenge, scope="service"))
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200, body
    assert body["token_type"] == "Bearer" and body["scope"] == "service" and body["refresh_token"]
    status, listed = await csc.call("credentials/list", {}, body["access_token"])
    assert status == 200 and dep.creds["p256"].id in listed["credentialIDs"]
    # a service token never authorizes signing on its own
    status, err = await _sign(csc, body["access_token"], dep.creds["p256"], [digest(b"x")])
    assert status == 400 and err["error_description"] == "Missing (or invalid type) string parameter SAD"
    # refresh, with client_secret_post this time: rotated
    form = {"grant_type": "refresh_token", "refresh_token": body["refresh_token"]}
    status, fresh = await token_request(http, dep, client, form, auth="post")
    assert status == 200, fresh
    assert fresh["refresh_token"] != body["refresh_token"]
    status, again = await token_request(http, dep, client, form)
    assert status == 400 and again["error"] == "invalid_grant"
    # another client cannot use it
    status, err = await token_request(http, dep, clients["other"], {"grant_type": "refresh_token",
                                                                    "refresh_token": fresh["refresh_token"]})
    assert status == 400 and err["error"] in ("invalid_grant", "unauthorized_client")
    # nor can the client-less auth/login refresh path (it would drop the client binding)
    status, err = await csc.call("auth/login", {"refresh_token": fresh["refresh_token"]})
    assert (status, err["error_description"]) == (400, "Invalid refresh_token")
    # revoking the refresh token ends the grant
    status, _ = await token_request(http, dep, client, {"token": fresh["refresh_token"],
                                                        "token_type_hint": "refresh_token"}, endpoint="revoke")
    assert status == 204
    status, err = await csc.call("credentials/list", {}, fresh["access_token"])
    assert status == 401
    status, err = await token_request(http, dep, client, {"grant_type": "refresh_token",
                                                          "refresh_token": fresh["refresh_token"]})
    assert status == 400 and err["error"] == "invalid_grant"


async def test_client_credentials(http, dep, csc, clients):
    status, body = await token_request(http, dep, clients["sa"], {"grant_type": "client_credentials",
                                                                  "scope": "service"})
    assert status == 200, body
    assert body["scope"] == "service" and "refresh_token" not in body
    status, listed = await csc.call("credentials/list", {}, body["access_token"])
    assert status == 200 and listed["credentialIDs"] == []
    status, err = await token_request(http, dep, clients["other"], {"grant_type": "client_credentials"})
    assert status == 400 and err["error"] == "unauthorized_client"
    status, err = await token_request(http, dep, clients["sa"], {"grant_type": "client_credentials",
                                                                 "scope": "credential"})
    assert status == 400 and err["error"] == "invalid_scope"


async def test_client_authentication_failures(http, dep, clients):
    client = clients["sa"]
    bad = type(client)(client.client_id, "wrong-secret", client.redirect_uri)
    status, err = await token_request(http, dep, bad, {"grant_type": "client_credentials"})
    assert status == 401 and err["error"] == "invalid_client"
    status, err = await token_request(http, dep, bad, {"grant_type": "client_credentials"}, auth="post")
    assert status == 401 and err["error"] == "invalid_client"
    async with http.post(f"{dep.base}/csc/v2/oauth2/token", data={"grant_type": "client_credentials"}) as resp:
        assert resp.status == 400 and (await resp.json())["error_description"] == "Missing parameter client_id"
    async with http.post(f"{dep.base}/csc/v2/oauth2/token", data={"grant_type": "client_credentials",
                                                                  "client_id": client.client_id}) as resp:
        assert resp.status == 401 and (await resp.json())["error_description"] == "Client authorization required"
    async with http.post(f"{dep.base}/csc/v2/oauth2/token", json={"grant_type": "client_credentials"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"
    status, err = await token_request(http, dep, client, {"grant_type": "password"})
    assert status == 400 and err["error"] == "unsupported_grant_type"
    async with http.post(f"{dep.base}/csc/v2/oauth2/token", data="grant_type=a&grant_type=b",
                         headers={"Content-Type": "application/x-www-form-urlencoded"}) as resp:
        assert resp.status == 400 and (await resp.json())["error"] == "invalid_request"


# ---------------------------------------------------------------------------- credential scope

async def test_credential_token_signs_exactly_what_was_authorized(http, dep, csc, clients):
    cred = dep.creds["l2_p256"]
    h1, h2, h3 = (digest(f"oauth doc {i} {time.time()}".encode()) for i in range(3))
    body = await _credential_token(http, dep, clients["sa"], cred, [h1, h2])
    token = body["access_token"]
    assert body["token_type"] == "Bearer" and body["credentialID"] == cred.id and "refresh_token" not in body
    # a hash that was not authorized: refused, nothing spent
    status, err = await _sign(csc, token, cred, [h3])
    assert status == 400 and err["error_description"] == "Hash is not authorized by the SAD."
    # another credential: looks unknown
    status, err = await _sign(csc, token, dep.creds["l2_rsa"], [h1])
    assert status == 400 and err["error_description"] == "Invalid parameter credentialID"
    # the token is not a service token
    status, _ = await csc.call("credentials/list", {}, token)
    assert status == 401
    status, signed = await _sign(csc, token, cred, [h1, h2])
    assert status == 200, signed
    cert = await certificate(csc, await csc.token(), cred)
    for d, s in zip([h1, h2], signed["signatures"], strict=True):
        verify_signature(cert, d, base64.b64decode(s))
    # the count is spent
    status, err = await _sign(csc, token, cred, [h1])
    assert status == 400


async def test_more_signatures_than_authorized_are_refused(http, dep, csc, clients):
    cred = dep.creds["p256"]  # level 1: not bound to hashes, only counted
    body = await _credential_token(http, dep, clients["sa"], cred, [], num=1)
    token = body["access_token"]
    status, err = await _sign(csc, token, cred, [digest(b"a"), digest(b"b")])
    assert status == 400 and "exceeds" in err["error_description"]
    status, signed = await _sign(csc, token, cred, [digest(b"a")])
    assert status == 200, signed
    status, _ = await _sign(csc, token, cred, [digest(b"b")])
    assert status == 400


async def test_expired_and_revoked_credential_tokens(http, dep, csc, clients):
    cred = dep.creds["p256"]  # level 1 (no TOTP step to wait for), still bound to the hash
    h = digest(f"expiry {time.time()}".encode())
    token = (await _credential_token(http, dep, clients["sa"], cred, [h]))["access_token"]
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            await conn.execute(update(tokens).where(tokens.c.token_hash == secret_digest(token))
                               .values(expires_at=time.time() - 1))
    finally:
        await store.close()
    status, err = await _sign(csc, token, cred, [h])
    assert status == 401 and err["error"] == "expired_token"
    # revocation (RFC 7009) of a live credential token
    token = (await _credential_token(http, dep, clients["sa"], cred, [h]))["access_token"]
    status, _ = await token_request(http, dep, clients["other"], {"token": token}, endpoint="revoke")
    assert status == 204  # another client's token: ignored
    status, _ = await _sign(csc, token, cred, [h])
    assert status == 200
    token = (await _credential_token(http, dep, clients["sa"], cred, [h]))["access_token"]
    status, _ = await token_request(http, dep, clients["sa"], {"token": token}, endpoint="revoke")
    assert status == 204
    status, err = await _sign(csc, token, cred, [h])
    assert status == 401


async def test_rar_and_signature_qualifier_free_flow(http, dep, csc, clients):
    cred = dep.creds["l2_rsa"]
    h = digest(f"rar {time.time()}".encode())
    details = [{"type": "https://cloudsignatureconsortium.org/2025/credential", "credentialID": cred.id,
                "documentDigests": [{"hash": b64(h), "label": "契約書 <Contract>"}],
                "hashAlgorithmOID": SHA256, "numSignatures": 1}]
    verifier, challenge = pkce()
    params = auth_params(clients["sa"], challenge, authorization_details=json.dumps(details))
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(params)
        page = await browser.login()
        assert page.status == 200 and "契約書 &lt;Contract&gt;" in page.text and "<Contract>" not in page.text
        page = await browser.consent(cred)
        assert page.status == 303, page.text
        code = query_of(page.location)["code"]
    status, body = await exchange(http, dep, clients["sa"], code, verifier,
                                  authorization_details=json.dumps(details))
    assert status == 200, body
    assert body["authorization_details"][0]["credentialID"] == cred.id
    assert body["authorization_details"][0]["documentDigests"] == details[0]["documentDigests"]
    status, signed = await csc.call("signatures/signHash", {
        "credentialID": cred.id, "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
        "signAlgo": "1.2.840.113549.1.1.11"}, body["access_token"])
    assert status == 200, signed
    verify_signature(await certificate(csc, await csc.token(), cred), h, base64.b64decode(signed["signatures"][0]))


async def test_par(http, dep, csc, clients):
    client, cred = clients["sa"], dep.creds["p256"]
    h = digest(f"par {time.time()}".encode())
    verifier, challenge = pkce()
    params = auth_params(client, challenge, **credential_params(cred, [h]))
    status, pushed = await token_request(http, dep, client, params, endpoint="pushed_authorize")
    assert status == 201, pushed
    assert pushed["request_uri"].startswith("urn:ietf:params:oauth:request_uri:") and 0 < pushed["expires_in"] <= 90
    async with FormBrowser(dep) as browser:
        page = await browser.authorize({"client_id": client.client_id, "request_uri": pushed["request_uri"]})
        assert page.status == 200, page.text
        page = await browser.login()
        page = await browser.consent(cred)
        code = query_of(page.location)["code"]
        # the request_uri is single use, and only for the client that pushed it
        page = await browser.authorize({"client_id": client.client_id, "request_uri": pushed["request_uri"]})
        assert page.status == 400 and page.location is None
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200
    status, signed = await _sign(csc, body["access_token"], cred, [h])
    assert status == 200
    status, pushed = await token_request(http, dep, client, params, endpoint="pushed_authorize")
    async with FormBrowser(dep) as browser:
        page = await browser.authorize({"client_id": clients["other"].client_id,
                                        "request_uri": pushed["request_uri"]})
        assert page.status == 400
    # PAR needs client authentication and validates like authorize
    status, err = await token_request(http, dep, client, {**params, "code_challenge_method": "plain"},
                                      endpoint="pushed_authorize")
    assert status == 400 and err["error"] == "invalid_request"
    bad = type(client)(client.client_id, "nope", client.redirect_uri)
    status, err = await token_request(http, dep, bad, params, endpoint="pushed_authorize")
    assert status == 401


# ---------------------------------------------------------------------------- code and PKCE

async def test_code_verifier_missing_or_wrong(http, dep, clients):
    client = clients["sa"]
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(client, challenge))
    status, err = await exchange(http, dep, client, code, None)
    assert status == 400 and err["error"] == "invalid_grant"
    code = await get_code(dep, auth_params(client, challenge))
    status, err = await exchange(http, dep, client, code, pkce()[0])
    assert status == 400 and err["error"] == "invalid_grant"
    status, err = await exchange(http, dep, client, code, verifier)  # a failed attempt spent the code
    assert status == 400 and err["error"] == "invalid_grant"


async def test_plain_pkce_and_implicit_are_refused_by_redirect(dep, clients):
    client = clients["sa"]
    _, challenge = pkce()
    cases = [
        ({"code_challenge_method": "plain"}, "invalid_request"),
        ({"code_challenge_method": None}, "invalid_request"),
        ({"code_challenge": None}, "invalid_request"),
        ({"response_type": "token"}, "unsupported_response_type"),
        ({"scope": "service credential"}, "invalid_scope"),
        ({"scope": "credential"}, "invalid_request"),  # no credentialID
    ]
    async with FormBrowser(dep) as browser:
        for change, error in cases:
            params = {k: v for k, v in {**auth_params(client, challenge), **change}.items() if v is not None}
            page = await browser.authorize(params)
            assert page.status == 303, (change, page.text)
            assert page.location.startswith(REDIRECT + "?")
            query = query_of(page.location)
            assert query["error"] == error and query["state"] == params["state"], change


async def test_untrusted_redirect_uri_gets_an_error_page(dep, clients):
    client = clients["sa"]
    _, challenge = pkce()
    cases = [
        {"redirect_uri": "https://evil.example/callback"},
        {"redirect_uri": REDIRECT + "/"},
        {"redirect_uri": REDIRECT + "?x=1"},
        {"redirect_uri": None},  # two are registered: it must be named
        {"client_id": "unknown-client"},
        {"client_id": None},
    ]
    async with FormBrowser(dep) as browser:
        for change in cases:
            params = {k: v for k, v in {**auth_params(client, challenge, response_type="token"), **change}.items()
                      if v is not None}
            page = await browser.authorize(params)
            assert page.status == 400 and page.location is None, change
            assert page.headers["Content-Type"].startswith("text/html")
            assert "evil.example" not in page.text


async def test_redirect_uri_must_match_at_the_token_endpoint(http, dep, clients):
    client = clients["sa"]
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(client, challenge))
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": OTHER_REDIRECT,
            "code_verifier": verifier}
    status, err = await token_request(http, dep, client, form)
    assert status == 400 and err["error"] == "invalid_grant"
    assert err["error_description"].startswith("redirect_uri parameter does not match")


async def test_reused_code_revokes_what_it_issued(http, dep, csc, clients):
    client, cred = clients["sa"], dep.creds["p256"]
    h = digest(f"replay {time.time()}".encode())
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(client, challenge, **credential_params(cred, [h])), cred)
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200
    status, err = await exchange(http, dep, client, code, verifier)
    assert status == 400 and err["error"] == "invalid_grant"
    status, err = await _sign(csc, body["access_token"], cred, [h])
    assert status == 401


async def test_code_of_another_client_is_refused(http, dep, clients):
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(clients["sa"], challenge))
    status, err = await exchange(http, dep, clients["other"], code, verifier)
    assert status == 400 and err["error"] == "invalid_grant"


async def test_public_client(http, dep, clients):
    client = clients["public"]
    verifier, challenge = pkce()
    code = await get_code(dep, auth_params(client, challenge))
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200 and "refresh_token" not in body
    status, err = await token_request(http, dep, client, {"grant_type": "client_credentials"})
    assert status == 400 and err["error"] == "unauthorized_client"


# ---------------------------------------------------------------------------- the pages

async def test_forms_need_the_csrf_token_of_their_session(dep, clients):
    _, challenge = pkce()
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(auth_params(clients["sa"], challenge))
        assert page.status == 200
        cookie = page.headers["Set-Cookie"]
        assert "HttpOnly" in cookie and "SameSite=Lax" in cookie
        for data in ({}, {"csrf": "forged"}):
            page = await browser.post("login", {"username": "alice", "password": "alice-password", **data},
                                      csrf=False)
            assert page.status == 403 and page.location is None
        async with FormBrowser(dep) as other:  # the right token without the session cookie
            page = await other.post("login", {"username": "alice", "password": "alice-password",
                                              "csrf": browser.csrf})
            assert page.status == 403
        page = await browser.login()
        assert page.status == 303  # the genuine form still works


async def test_wrong_login_and_deny(dep, clients):
    cred = dep.creds["p256"]
    _, challenge = pkce()
    params = auth_params(clients["sa"], challenge, lang="ja", **credential_params(cred, [digest(b"d")]))
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(params)
        assert '<html lang="ja">' in page.text and "ログイン" in page.text
        page = await browser.post("login", {"username": "alice", "password": "wrong"})
        assert page.status == 400 and "正しくありません" in page.text
        page = await browser.login()
        assert page.status == 200 and "署名の承認" in page.text and cred.id in page.text
        page = await browser.post("consent", {"action": "deny"})
        assert page.status == 303
        assert query_of(page.location)["error"] == "access_denied"


async def test_login_page_shares_the_password_throttle_of_auth_login(csc, dep, clients):
    """Wrong passwords on the page and on auth/login count together; the page then refuses."""
    user = f"oauth-throttled-{time.monotonic_ns()}"
    dep.add_user(user, "right-password")
    _, challenge = pkce()
    async with FormBrowser(dep) as browser:
        await browser.authorize(auth_params(clients["sa"], challenge, scope="service"))
        for _ in range(3):
            page = await browser.post("login", {"username": user, "password": "wrong"})
            assert page.status == 400
        for _ in range(2):
            status, _ = await csc.call("auth/login", {}, headers={
                "Authorization": aiohttp.encode_basic_auth(user, "wrong")})
            assert status == 400
        page = await browser.post("login", {"username": user, "password": "right-password"})
        assert page.status == 429 and "Try again later" in page.text


async def test_wrong_pin_on_the_consent_page_counts_toward_lockout(dep, clients):
    if "oauth_lock" not in dep.creds:
        dep.add_credential("oauth_lock", "alice", "ec-p256")
    cred = dep.creds["oauth_lock"]
    _, challenge = pkce()
    params = auth_params(clients["sa"], challenge, **credential_params(cred, [digest(b"lock")]))
    async with FormBrowser(dep) as browser:
        await browser.authorize(params)
        page = await browser.login()
        page = await browser.consent(cred, pin="")  # absent: re-asked, not counted
        assert page.status == 400
        for _ in range(5):  # max_failed_attempts of the deployment
            page = await browser.consent(cred, pin="000000")
            assert page.status == 400 and "The authentication data is invalid." in page.text
        page = await browser.consent(cred)  # locked now: the flow ends
        assert page.status == 303 and query_of(page.location)["error"] == "access_denied"
    store = open_store(dep.db_url)
    try:
        async with store.read() as conn:
            row = (await conn.execute(select(credentials).where(credentials.c.id == cred.id))).first()
    finally:
        await store.close()
    assert row.locked and row.failed_attempts >= 5
    async with FormBrowser(dep) as browser:  # the right PIN no longer helps
        await browser.authorize(params)
        await browser.login()
        page = await browser.consent(cred)
        assert page.status == 303 and query_of(page.location)["error"] == "access_denied"
