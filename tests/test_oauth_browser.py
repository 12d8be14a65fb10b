"""The OAuth code flow in a real browser: Debian's headless Chromium driven by Playwright.

The signer logs in, reads the consent page (credential, number of signatures, document
labels and hashes), enters the PIN (and TOTP at level 2) and approves; the browser lands on the
signature application's redirect URI (a real HTTP server here); the application exchanges the
code with its PKCE verifier and calls signHash with the credential-scoped token and no SAD;
the signature verifies against the credential's certificate. Plain, with PAR, and with RAR.
Chromium is the apt package (scripts/test.sh); Playwright never downloads a browser.
"""

from __future__ import annotations

import asyncio
import base64
import json
import time
from urllib.parse import urlencode

import pytest

from client import ECDSA_SHA256, OTP, SHA256, SHA256_RSA, b64, digest
from oauth_helpers import AUTHZ, add_client, auth_params, credential_params, exchange, pkce, \
    token_request, verify_signature
from test_csc_flow import certificate

# chromium and callback: session fixtures in tests/conftest.py (shared with the factor tests)


@pytest.fixture
def sa(dep, callback):
    """The signature application's client, registered once per deployment."""
    key = f"_oauth_browser_client_{callback.port}"
    if key not in dep.__dict__:
        dep.__dict__[key] = add_client(dep, "署名ポータル <Portal>", callback.uri)
    return dep.__dict__[key]


async def _approve_in_browser(chromium, callback, url: str, cred, *, expect: list[str]) -> dict:
    """Log in and approve on the pages; return the query the redirect URI received."""
    while not callback.received.empty():
        callback.received.get_nowait()
    context = await chromium.new_context(locale="en-US")
    try:
        page = await context.new_page()
        await page.goto(url)
        assert "署名ポータル <Portal>" in await page.inner_text("body")  # escaped, shown as text
        await page.fill("#username", "alice")
        await page.fill("#password", "alice-password")
        await page.click("#signin")
        await page.wait_for_selector("#approve")
        body = await page.inner_text("body")
        for text in expect:
            assert text in body, (text, body)
        await page.fill("#pin", cred.pin)
        if cred.totp_seed:
            await page.fill("#otp", OTP.code(cred))
        await page.click("#approve")
        query = await asyncio.wait_for(callback.received.get(), 30)
        await page.wait_for_url(f"{callback.uri}*")
        return query
    finally:
        await context.close()


async def _sign_and_verify(http, dep, csc, sa, query, verifier, cred, h, sign_algo, **extra):
    assert "code" in query, query
    status, body = await exchange(http, dep, sa, query["code"], verifier, **extra)
    assert status == 200, body
    assert body["credentialID"] == cred.id
    status, signed = await csc.call("signatures/signHash", {
        "credentialID": cred.id, "hashes": [b64(h)], "hashAlgorithmOID": SHA256, "signAlgo": sign_algo,
    }, body["access_token"])
    assert status == 200, signed
    verify_signature(await certificate(csc, await csc.token(), cred), h, base64.b64decode(signed["signatures"][0]))
    return body


async def test_code_flow_level2_in_chromium(chromium, callback, http, dep, csc, sa):
    cred = dep.creds["l2_p256"]
    h = digest(f"browser {time.time()}".encode())
    verifier, challenge = pkce()
    params = auth_params(sa, challenge, **credential_params(cred, [h]), description="Contract for Taro")
    query = await _approve_in_browser(chromium, callback, f"{dep.base}{AUTHZ}?{urlencode(params)}", cred,
                                      expect=[cred.id, "Number of signatures", b64(h), "Contract for Taro"])
    assert query["state"] == params["state"]
    await _sign_and_verify(http, dep, csc, sa, query, verifier, cred, h, ECDSA_SHA256)


async def test_code_flow_with_par_in_chromium(chromium, callback, http, dep, csc, sa):
    cred = dep.creds["p256"]
    h = digest(f"browser par {time.time()}".encode())
    verifier, challenge = pkce()
    params = auth_params(sa, challenge, lang="ja", **credential_params(cred, [h]))
    status, pushed = await token_request(http, dep, sa, params, endpoint="pushed_authorize")
    assert status == 201, pushed
    url = f"{dep.base}{AUTHZ}?{urlencode({'client_id': sa.client_id, 'request_uri': pushed['request_uri']})}"
    query = await _approve_in_browser(chromium, callback, url, cred, expect=["署名数", cred.id, b64(h)])
    assert query["state"] == params["state"]
    await _sign_and_verify(http, dep, csc, sa, query, verifier, cred, h, ECDSA_SHA256)


async def test_code_flow_with_rar_in_chromium(chromium, callback, http, dep, csc, sa):
    cred = dep.creds["l2_rsa"]
    h = digest(f"browser rar {time.time()}".encode())
    details = [{"type": "credential", "credentialID": cred.id, "hashAlgorithmOID": SHA256,
                "documentDigests": [{"hash": b64(h), "label": "売買契約書.pdf"}]}]
    verifier, challenge = pkce()
    params = auth_params(sa, challenge, authorization_details=json.dumps(details, ensure_ascii=False))
    query = await _approve_in_browser(chromium, callback, f"{dep.base}{AUTHZ}?{urlencode(params)}", cred,
                                      expect=["売買契約書.pdf", b64(h)])
    body = await _sign_and_verify(http, dep, csc, sa, query, verifier, cred, h, SHA256_RSA)
    assert body["authorization_details"][0]["credentialID"] == cred.id


async def test_consent_form_without_csrf_token_is_refused_in_chromium(chromium, callback, dep, sa):
    cred = dep.creds["p256"]
    _, challenge = pkce()
    params = auth_params(sa, challenge, **credential_params(cred, [digest(b"csrf")]))
    context = await chromium.new_context(bypass_csp=True)
    try:
        page = await context.new_page()
        await page.goto(f"{dep.base}{AUTHZ}?{urlencode(params)}")
        await page.fill("#username", "alice")
        await page.fill("#password", "alice-password")
        await page.click("#signin")
        await page.wait_for_selector("#approve")
        await page.evaluate("document.querySelector('input[name=csrf]').remove()")
        await page.fill("#pin", cred.pin)
        async with page.expect_navigation():
            await page.click("#approve")
        assert "CSRF" in await page.inner_text("body")
        assert page.url.startswith(dep.base)  # no redirect to the client
    finally:
        await context.close()
