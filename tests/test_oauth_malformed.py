"""Malformed input to the OAuth endpoints (form bodies and query strings), over real HTTP.

Like test_malformed.py does for the CSC JSON methods: each row is one malformed or refused
request to ``oauth2/token``, ``oauth2/pushed_authorize``, ``oauth2/revoke`` (JSON answers with
the RFC 6749 §5.2 error code, status and description), ``oauth2/authorize`` and the login and
consent form posts (HTML pages with the description). The expected texts are written here. No
row may get a 500, and each fails if its check is removed. Against the running server on both
backends.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass
from urllib.parse import quote

import aiohttp
import pytest
from yarl import URL

from deployment import Deployment
from lifecycle_helpers import lifecycle_client
from oauth_helpers import OAuthClient, pkce

FORM = "application/x-www-form-urlencoded"
CONTENT_TYPE = "Content-Type must be application/x-www-form-urlencoded"
_, CHALLENGE = pkce()


@dataclass(frozen=True)
class Row:
    endpoint: str  # token | pushed_authorize | revoke | authorize | login | consent
    name: str
    body: str | bytes  # a str is the form (CLIENT, SECRET and CHALLENGE filled in); bytes are sent as is
    status: int
    error: str | None  # None: an HTML page (authorize, login, consent) showing the description
    description: str
    content_type: str | None = FORM
    auth: str = "basic"  # basic (the client's secret) | none | a literal Authorization header
    verb: str = "POST"


def _t(name: str, body: str | bytes, status: int, error: str | None, description: str, **kw: str) -> Row:
    return Row("token", name, body, status, error, description, **kw)  # type: ignore[arg-type]


AUTHZ = "response_type=code&client_id=CLIENT&redirect_uri=REDIRECT&code_challenge=CHALLENGE&code_challenge_method=S256"

ROWS = [
    # --- the body itself (every form endpoint reads it the same way)
    *[Row(ep, f"{ct or 'no'} content type", "grant_type=client_credentials", 400, "invalid_request", CONTENT_TYPE,
          content_type=ct) for ep in ("token", "pushed_authorize", "revoke")
      for ct in ("application/json", "text/plain", "multipart/form-data; boundary=x", None)],
    _t("JSON body", b'{"grant_type": "client_credentials"}', 400, "invalid_request", CONTENT_TYPE,
       content_type="application/json"),
    _t("body not UTF-8", b"grant_type=\xff\xfe", 400, "invalid_request", "Malformed request body"),
    _t("percent-encoded bytes not UTF-8", "grant_type=%FF", 400, "invalid_request", "Malformed query string"),
    _t("a parameter twice", "grant_type=client_credentials&grant_type=client_credentials", 400, "invalid_request",
       "Duplicated parameter grant_type"),
    _t("a parameter twice, once empty", "grant_type=refresh_token&grant_type=", 400, "invalid_request",
       "Duplicated parameter grant_type"),
    _t("client_id twice", "grant_type=client_credentials&client_id=CLIENT&client_id=CLIENT&client_secret=SECRET",
       400, "invalid_request", "Duplicated parameter client_id", auth="none"),
    _t("a value over 8192 characters", "grant_type=authorization_code&redirect_uri=x&code=" + "c" * 8193, 400,
       "invalid_request", "Invalid parameter code"),
    _t("a NUL in a value", "grant_type=refresh_token&refresh_token=a%00b", 400, "invalid_request",
       "Invalid parameter refresh_token"),
    _t("a NUL in a name", "grant_type=refresh_token&refresh%00token=x", 400, "invalid_request",
       "Invalid parameter"),
    _t("a body over the server's limit", "grant_type=refresh_token&refresh_token=" + "r" * (2 * 1024 * 1024), 413,
       "invalid_request", "Request body too large"),
    Row("token", "GET", "", 405, "invalid_request", "Method not allowed; use POST", verb="GET"),
    # --- grant types
    _t("no grant_type", "code=x", 400, "invalid_request", "Missing parameter grant_type"),
    _t("an empty grant_type", "grant_type=&code=x", 400, "invalid_request", "Missing parameter grant_type"),
    *[_t(f"grant_type {g}", f"grant_type={g}", 400, "unsupported_grant_type", "Invalid parameter grant_type")
      for g in ("password", "implicit", "token", "AUTHORIZATION_CODE",
                "urn:ietf:params:oauth:grant-type:jwt-bearer")],
    _t("client_credentials for a client without it", "grant_type=client_credentials", 400, "unauthorized_client",
       "The client is not allowed to use this grant type"),
    _t("code: no code", "grant_type=authorization_code&redirect_uri=x&code_verifier=v", 400, "invalid_request",
       "Missing parameter code"),
    _t("code: an empty code", "grant_type=authorization_code&code=&redirect_uri=x", 400, "invalid_request",
       "Missing parameter code"),
    _t("code: no redirect_uri", "grant_type=authorization_code&code=x", 400, "invalid_request",
       "Missing parameter redirect_uri"),
    _t("code: unknown", "grant_type=authorization_code&code=x&redirect_uri=REDIRECT&code_verifier=v", 400,
       "invalid_grant", "Authorization code is invalid or expired"),
    _t("refresh: no refresh_token", "grant_type=refresh_token", 400, "invalid_request",
       "Missing parameter refresh_token"),
    _t("refresh: unknown", "grant_type=refresh_token&refresh_token=nope", 400, "invalid_grant",
       "Invalid parameter refresh_token"),
    # --- client authentication
    _t("no client authentication", "grant_type=refresh_token&refresh_token=x", 400, "invalid_request",
       "Missing parameter client_id", auth="none"),
    _t("an unknown client", "grant_type=refresh_token&client_id=nobody&client_secret=x", 401, "invalid_client",
       "Invalid parameter client_id", auth="none"),
    _t("a client_id over 64 characters", "grant_type=refresh_token&client_id=" + "c" * 65 + "&client_secret=x", 401,
       "invalid_client", "Invalid parameter client_id", auth="none"),
    _t("a wrong client_secret", "grant_type=refresh_token&client_id=CLIENT&client_secret=wrong", 401,
       "invalid_client", "Invalid parameter client_secret", auth="none"),
    _t("a confidential client without its secret", "grant_type=refresh_token&client_id=CLIENT", 401,
       "invalid_client", "Client authorization required", auth="none"),
    _t("an empty client_secret", "grant_type=refresh_token&client_id=CLIENT&client_secret=", 401, "invalid_client",
       "Client authorization required", auth="none"),
    _t("Basic and client_secret both", "grant_type=refresh_token&client_secret=SECRET", 400, "invalid_request",
       "Only one client authentication method may be used"),
    _t("Basic with another client_id", "grant_type=refresh_token&client_id=other", 400, "invalid_request",
       "Invalid parameter client_id"),
    _t("Basic not Base64", "grant_type=refresh_token", 401, "invalid_client", "Invalid authorization header",
       auth="Basic !!!"),
    _t("Basic without a colon", "grant_type=refresh_token", 401, "invalid_client", "Invalid authorization header",
       auth="Basic " + base64.b64encode(b"justaname").decode()),
    _t("Basic of bytes not UTF-8", "grant_type=refresh_token", 401, "invalid_client", "Invalid authorization header",
       auth="Basic " + base64.b64encode(b"\xff:\xfe").decode()),
    _t("a Bearer token instead", "grant_type=refresh_token", 401, "invalid_client", "Invalid authorization header",
       auth="Bearer abc"),
    # --- pushed authorization requests
    Row("pushed_authorize", "a parameter twice", AUTHZ + "&state=a&state=b", 400, "invalid_request",
        "Duplicated parameter state"),
    Row("pushed_authorize", "no response_type", AUTHZ.replace("response_type=code&", ""), 400, "invalid_request",
        "Missing parameter response_type"),
    Row("pushed_authorize", "response_type token", AUTHZ.replace("=code&", "=token&"), 400,
        "unsupported_response_type", "Only response_type=code is supported"),
    Row("pushed_authorize", "a request_uri inside", AUTHZ + "&request_uri=urn:x", 400, "invalid_request",
        "request_uri is not allowed in a pushed authorization request"),
    Row("pushed_authorize", "an unknown scope", AUTHZ + "&scope=admin", 400, "invalid_scope",
        "Invalid parameter scope"),
    Row("pushed_authorize", "two scopes", AUTHZ + "&scope=service+credential", 400, "invalid_scope",
        "Invalid parameter scope"),
    Row("pushed_authorize", "no code_challenge", AUTHZ.replace("code_challenge=CHALLENGE&", ""), 400,
        "invalid_request", "Missing parameter code_challenge"),
    Row("pushed_authorize", "a short code_challenge", AUTHZ.replace("CHALLENGE", "abc"), 400, "invalid_request",
        "Invalid parameter code_challenge"),
    Row("pushed_authorize", "numSignatures not a number", AUTHZ + "&scope=credential&credentialID=c&numSignatures=x",
        400, "invalid_request", "Invalid parameter numSignatures"),
    Row("pushed_authorize", "a description over 500 characters", AUTHZ + "&description=" + "d" * 501, 400,
        "invalid_request", "Invalid parameter description"),
    Row("pushed_authorize", "no client authentication", AUTHZ, 401, "invalid_client",
        "Client authorization required", auth="none"),
    # --- revocation
    Row("revoke", "no token", "token_type_hint=access_token", 400, "invalid_request", "Missing parameter token"),
    Row("revoke", "an unknown token_type_hint", "token=x&token_type_hint=id_token", 400, "invalid_request",
        "Invalid parameter token_type_hint"),
    Row("revoke", "a token twice", "token=x&token=y", 400, "invalid_request", "Duplicated parameter token"),
    Row("revoke", "a wrong client_secret", "token=x&client_id=CLIENT&client_secret=wrong", 401, "invalid_client",
        "Invalid parameter client_secret", auth="none"),
    # --- the browser side: HTML pages, never a redirect to an untrusted place
    Row("authorize", "percent-encoded bytes not UTF-8", "client_id=%FF", 400, None, "Malformed query string",
        verb="GET"),
    Row("authorize", "client_id twice", "client_id=CLIENT&client_id=CLIENT", 400, None,
        "Duplicated parameter client_id", verb="GET"),
    Row("authorize", "no client_id", "response_type=code", 400, None, "Missing parameter client_id", verb="GET"),
    Row("authorize", "an empty client_id", "client_id=&response_type=code", 400, None, "Missing parameter client_id",
        verb="GET"),
    Row("authorize", "an unknown client_id", "client_id=nobody", 400, None, "Invalid parameter client_id",
        verb="GET"),
    Row("authorize", "a NUL in a value", "client_id=CLIENT&state=%00", 400, None, "Invalid parameter state",
        verb="GET"),
    Row("authorize", "an unknown request_uri", "client_id=CLIENT&request_uri=urn:ietf:params:oauth:request_uri:x",
        400, None, "Invalid parameter request_uri", verb="GET"),
    Row("authorize", "a request_uri of another form", "client_id=CLIENT&request_uri=https://evil.example/r", 400,
        None, "Invalid parameter request_uri", verb="GET"),
    Row("authorize", "POST", AUTHZ, 405, "invalid_request", "Method not allowed; use POST", verb="POST"),
    *[Row(step, "wrong content type", b'{"csrf": "x"}', 400, None, CONTENT_TYPE,
          content_type="application/json", auth="none") for step in ("login", "consent")],
    *[Row(step, "body not UTF-8", b"csrf=\xff", 400, None, "Malformed request body", auth="none")
      for step in ("login", "consent")],
    *[Row(step, "csrf twice", "csrf=a&csrf=b", 400, None, "Duplicated parameter csrf", auth="none")
      for step in ("login", "consent")],
    *[Row(step, "no session", "csrf=a&username=alice&password=x", 403, None,
          "The form is not valid for this session (missing or wrong CSRF token, or expired)", auth="none")
      for step in ("login", "consent")],
]


def _fill(text: str, client: OAuthClient) -> str:
    return (text.replace("CLIENT", client.client_id).replace("SECRET", client.secret or "")
            .replace("REDIRECT", quote(client.redirect_uri, safe="")).replace("CHALLENGE", CHALLENGE))


async def _send(http: aiohttp.ClientSession, dep: Deployment, row: Row) -> tuple[int, dict[str, str], str]:
    client = lifecycle_client(dep)
    body = row.body if isinstance(row.body, bytes) else _fill(row.body, client).encode()
    headers: dict[str, str] = {}
    if row.content_type is not None:
        headers["Content-Type"] = row.content_type
    if row.auth == "basic":
        headers["Authorization"] = aiohttp.encode_basic_auth(client.client_id, client.secret or "")
    elif row.auth != "none":
        headers["Authorization"] = row.auth
    path = f"{dep.base}/csc/v2/oauth2/{row.endpoint}"
    if row.verb == "GET":
        url = URL(f"{path}?{body.decode()}", encoded=True)
        async with http.get(url, headers=headers, allow_redirects=False) as resp:
            return resp.status, dict(resp.headers), await resp.text()
    async with http.post(path, data=body, headers=headers, skip_auto_headers=["Content-Type"],
                         allow_redirects=False) as resp:
        return resp.status, dict(resp.headers), await resp.text()


@pytest.mark.parametrize("row", ROWS, ids=lambda r: f"{r.endpoint}: {r.name}")
async def test_malformed_oauth_request(http: aiohttp.ClientSession, dep: Deployment, row: Row) -> None:
    status, headers, text = await _send(http, dep, row)
    assert status == row.status, text[:2000]
    assert "Location" not in headers
    if row.error is None:
        assert headers["Content-Type"].startswith("text/html"), headers
        assert f'role="alert">{row.description}</p>' in text, text[:2000]
        return
    assert json.loads(text) == {"error": row.error, "error_description": row.description}
    if status == 401:  # RFC 6749 §5.2: the scheme the client authenticates with
        assert headers["WWW-Authenticate"] == 'Basic realm="rssp", charset="UTF-8"'


def test_row_names_are_unique() -> None:
    names = [f"{r.endpoint}: {r.name}" for r in ROWS]
    assert len(names) == len(set(names))


async def test_an_unknown_token_is_revoked_silently(http: aiohttp.ClientSession, dep: Deployment) -> None:
    """RFC 7009 §2.2: an invalid token is no error (and says nothing about other clients' tokens)."""
    row = Row("revoke", "unknown token", "token=nope&token_type_hint=refresh_token", 204, None, "")
    status, _, text = await _send(http, dep, row)
    assert (status, text) == (204, "")
