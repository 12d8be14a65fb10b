"""Redirect URIs (RFC 6749 §3.1.2, OAuth 2.1 §4.1.1, RFC 9126): what may be registered, what matches.

The rules rssp enforces: a registered URI is absolute ``https`` (plain ``http`` only for the
loopback hosts), with no fragment; ``authorization_code`` needs one; a request's URI matches a
registered one exactly (no prefix, case, port, path or query leeway; RFC 8252's loopback port
leeway is not offered); one registered URI may be left out, two must be named; a URI that does
not match is never redirected to (an HTML error page instead); a pushed request's URI is checked
the same way and is the one the browser goes back to; the token request must name the URI the
code was issued for. Registration is through the operator's CLI, the rest over HTTP against the
running server on both backends.
"""

from __future__ import annotations

from urllib.parse import urlencode

import aiohttp
import pytest
from yarl import URL

from deployment import Deployment
from oauth_helpers import (
    FormBrowser, OAuthClient, add_client, auth_params, exchange, get_code, pkce, query_of, token_request,
)

ONE = "https://one.example/cb"
FIRST, SECOND = "https://two.example/cb", "https://two.example/cb?app=second"
LOOPBACK = "http://127.0.0.1:8765/cb"
ENCODED = "https://enc.example/cb?next=%2Fhome%3Fa%3D1"  # a registered URI with percent-encoded characters


def _clients(dep: Deployment) -> dict[str, OAuthClient]:
    cache = dep.__dict__.setdefault("_redirect_clients", {})
    if not cache:
        cache["one"] = add_client(dep, "One URI", ONE)
        cache["two"] = add_client(dep, "Two URIs", FIRST, "--redirect-uri", SECOND)
        cache["loopback"] = add_client(dep, "Native app", LOOPBACK, "--public")
        cache["encoded"] = add_client(dep, "Encoded URI", ENCODED)
    return cache


# ---------------------------------------------------------------------------- registration


@pytest.mark.parametrize("uri, message", [
    ("https://sa.example/cb#top", "must be an absolute http(s) URI without a fragment"),
    ("https://sa.example/cb#", "must be an absolute http(s) URI without a fragment"),
    ("/cb", "must be an absolute http(s) URI without a fragment"),
    ("https:///cb", "must be an absolute http(s) URI without a fragment"),
    ("com.example.app:/cb", "must be an absolute http(s) URI without a fragment"),
    ("javascript://sa.example/%0aalert(1)", "must be an absolute http(s) URI without a fragment"),
    ("ftp://sa.example/cb", "must be an absolute http(s) URI without a fragment"),
    ("http://sa.example/cb", "plain http is allowed only for loopback hosts"),
    ("http://127.0.0.1.sa.example/cb", "plain http is allowed only for loopback hosts"),
    ("http://localhost.sa.example/cb", "plain http is allowed only for loopback hosts"),
])
def test_a_redirect_uri_that_may_not_be_registered_is_refused(dep: Deployment, uri: str, message: str) -> None:
    done = dep.rssp("client", "add", str(dep.directory), "Refused", "--redirect-uri", uri, check=False)
    assert done.returncode == 2 and message in done.stderr and f"redirect URI {uri!r}" in done.stderr, done.stderr
    assert "client_id" not in done.stdout


def test_the_code_flow_needs_a_redirect_uri_and_loopback_http_is_allowed(dep: Deployment) -> None:
    done = dep.rssp("client", "add", str(dep.directory), "No URI", check=False)
    assert done.returncode == 2 and "authorization_code needs at least one --redirect-uri" in done.stderr
    for uri in ("http://127.0.0.1:9/cb", "http://localhost/cb", "http://[::1]:9/cb"):
        out = dep.rssp_json("client", "add", str(dep.directory), "Loopback", "--redirect-uri", uri, "--public")
        assert out["redirect_uris"] == [uri]


# ---------------------------------------------------------------------------- matching at oauth2/authorize


MISMATCHES = [
    ("one", ONE + "/", "Invalid parameter redirect_uri"),
    ("one", ONE + "?x=1", "Invalid parameter redirect_uri"),
    ("one", ONE + "#frag", "Invalid parameter redirect_uri"),
    ("one", "https://ONE.example/cb", "Invalid parameter redirect_uri"),
    ("one", "https://one.example:443/cb", "Invalid parameter redirect_uri"),
    ("one", "https://one.example/cb/../cb", "Invalid parameter redirect_uri"),
    ("one", "https://one.example/c%62", "Invalid parameter redirect_uri"),
    ("one", "http://one.example/cb", "Invalid parameter redirect_uri"),
    ("one", "https://one.example.evil.example/cb", "Invalid parameter redirect_uri"),
    ("two", "https://two.example/cb?app=other", "Invalid parameter redirect_uri"),
    ("two", None, "Missing parameter redirect_uri"),  # two registered: it must be named
    ("loopback", "http://127.0.0.1:8766/cb", "Invalid parameter redirect_uri"),  # no port leeway
    ("loopback", "http://localhost:8765/cb", "Invalid parameter redirect_uri"),
    ("encoded", "https://enc.example/cb?next=/home?a=1", "Invalid parameter redirect_uri"),  # decoded once more
]


@pytest.mark.parametrize("which, uri, description", MISMATCHES)
async def test_an_unregistered_redirect_uri_gets_an_error_page_never_a_redirect(
        http: aiohttp.ClientSession, dep: Deployment, which: str, uri: str | None, description: str) -> None:
    client = _clients(dep)[which]
    _, challenge = pkce()
    params = auth_params(client, challenge, response_type="token")  # an error that would redirect, if it could
    params.pop("redirect_uri")
    if uri is not None:
        params["redirect_uri"] = uri
    url = URL(f"{dep.base}/csc/v2/oauth2/authorize?{urlencode(params)}", encoded=True)  # %62 sent as %2562
    async with http.get(url, allow_redirects=False) as resp:
        text = await resp.text()
        assert resp.status == 400 and "Location" not in resp.headers, text
        assert resp.headers["Content-Type"].startswith("text/html")
    assert description in text
    # the same request pushed: the same refusal, as JSON
    status, body = await token_request(http, dep, client, params, endpoint="pushed_authorize")
    assert (status, body) == (400, {"error": "invalid_request", "error_description": description})


async def test_a_registered_uri_is_redirected_to_with_its_own_query_kept(dep: Deployment) -> None:
    clients = _clients(dep)
    _, challenge = pkce()
    async with FormBrowser(dep) as browser:
        for client, uri in ((clients["two"], SECOND), (clients["two"], FIRST), (clients["one"], None),
                            (clients["loopback"], LOOPBACK)):
            params = auth_params(client, challenge, response_type="token")
            params.pop("redirect_uri")
            if uri is not None:
                params["redirect_uri"] = uri
            page = await browser.authorize(params)
            expected = uri or client.redirect_uri
            assert page.status == 303 and page.location is not None, page.text
            assert page.location.split("?")[0] == expected.split("?")[0]
            query = query_of(page.location)
            assert query["error"] == "unsupported_response_type" and query["state"] == params["state"]
            if uri == SECOND:
                assert query["app"] == "second" and page.location.startswith(SECOND + "&")


async def test_query_parameters_are_decoded_once(http: aiohttp.ClientSession, dep: Deployment) -> None:
    """A registered URI with percent-encoded characters matches as sent, and the state comes back as sent.

    (aiohttp's ``query_string`` is decoded once already; decoding it again made ``%2F`` in a
    registered URI unmatchable and changed a state holding ``%41`` into ``A``.)
    """
    client = _clients(dep)["encoded"]
    _, challenge = pkce()
    params = {**auth_params(client, challenge, response_type="token"), "state": "50%41+b"}
    url = URL(f"{dep.base}/csc/v2/oauth2/authorize?{urlencode(params)}", encoded=True)
    async with http.get(url, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        location = resp.headers["Location"]
    assert location.startswith(ENCODED + "&")
    assert query_of(location) == {"next": "/home?a=1", "error": "unsupported_response_type",
                                  "error_description": "Only response_type=code is supported", "state": "50%41+b"}


# ---------------------------------------------------------------------------- pushed requests and the token


async def test_a_pushed_request_goes_back_to_its_own_redirect_uri(http: aiohttp.ClientSession,
                                                                  dep: Deployment) -> None:
    """RFC 9126 §4: the pushed parameters are the request; a redirect_uri in the query changes nothing."""
    client = _clients(dep)["two"]
    verifier, challenge = pkce()
    pushed_params = auth_params(client, challenge, scope="service")
    pushed_params["redirect_uri"] = SECOND
    status, pushed = await token_request(http, dep, client, pushed_params, endpoint="pushed_authorize")
    assert status == 201, pushed
    async with FormBrowser(dep) as browser:
        page = await browser.authorize({"client_id": client.client_id, "request_uri": pushed["request_uri"],
                                        "redirect_uri": "https://evil.example/cb"})
        assert page.status == 200, page.text
        page = await browser.login()
        assert page.status == 303 and page.location is not None and page.location.startswith(SECOND + "&"), \
            page.location
        code = query_of(page.location)["code"]
    # the token request must name the pushed URI, not the client's other one
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": FIRST, "code_verifier": verifier}
    status, body = await token_request(http, dep, client, form)
    assert (status, body["error"]) == (400, "invalid_grant"), body
    assert body["error_description"] == ("redirect_uri parameter does not match redirect_uri parameter of "
                                         "authorization request")


async def test_the_token_request_must_name_the_redirect_uri(http: aiohttp.ClientSession, dep: Deployment) -> None:
    """OAuth 2.1 keeps RFC 6749 §4.1.3's rule when the authorization request named it: rssp always asks for it."""
    client = _clients(dep)["one"]
    verifier, challenge = pkce()
    params = auth_params(client, challenge, scope="service")
    del params["redirect_uri"]  # the one registered URI, by default
    code = await get_code(dep, params)
    status, body = await token_request(http, dep, client, {"grant_type": "authorization_code", "code": code,
                                                           "code_verifier": verifier})
    assert (status, body) == (400, {"error": "invalid_request", "error_description": "Missing parameter redirect_uri"})
    code = await get_code(dep, params)
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200, body
