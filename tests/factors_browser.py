"""Headless Chromium for the factor tests (#14): virtual WebAuthn authenticators and the consent page.

Debian's chromium driven by Playwright, as in tests/test_oauth_browser.py. A virtual
authenticator is added through the Chrome DevTools Protocol (``WebAuthn.addVirtualAuthenticator``:
CTAP2, internal, resident keys, user verification that succeeds), so the pages run the real
browser WebAuthn API against rssp; the DevTools ``WebAuthn`` domain also reads an authenticator's
credentials (with the private key and sign counter) and plants credentials in another one, which
is how a test makes a cloned authenticator.
"""

from __future__ import annotations

import asyncio
import base64
import os
from dataclasses import dataclass
from typing import Any

from client import CSC, ECDSA_SHA256, SHA256, b64
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from deployment import Cred
from level3_helpers import verify
from oauth_helpers import Callback, exchange

CHROMIUM = os.environ.get("RSSP_TEST_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-background-networking", "--disable-component-update",
                 "--disable-sync", "--no-first-run", "--disable-dev-shm-usage"]


@dataclass
class Tab:
    """A browser context with one page and, optionally, a virtual authenticator on it."""

    context: Any
    page: Any
    cdp: Any = None
    authenticator: str | None = None

    async def close(self) -> None:
        await self.context.close()

    async def credentials(self) -> list[dict[str, Any]]:
        """The authenticator's credentials, private keys and sign counters included (DevTools)."""
        out = await self.cdp.send("WebAuthn.getCredentials", {"authenticatorId": self.authenticator})
        return out["credentials"]

    async def plant(self, credential_id: str, private_key: str, sign_count: int = 0) -> None:
        """Put a credential (base64 ID, base64 PKCS#8 key) into this tab's authenticator."""
        await self.cdp.send("WebAuthn.addCredential", {"authenticatorId": self.authenticator, "credential": {
            "credentialId": credential_id, "isResidentCredential": False, "rpId": "localhost",
            "privateKey": private_key, "signCount": sign_count}})


async def tab(chromium: Any, *, authenticator: bool = True, lang: str = "en-US") -> Tab:
    context = await chromium.new_context(locale=lang)
    page = await context.new_page()
    out = Tab(context, page)
    if authenticator:
        out.cdp = await context.new_cdp_session(page)
        await out.cdp.send("WebAuthn.enable")
        added = await out.cdp.send("WebAuthn.addVirtualAuthenticator", {"options": {
            "protocol": "ctap2", "transport": "internal", "hasResidentKey": True, "hasUserVerification": True,
            "isUserVerified": True, "automaticPresenceSimulation": True}})
        out.authenticator = added["authenticatorId"]
    return out


def fresh_p256_pkcs8() -> str:
    key = ec.generate_private_key(ec.SECP256R1())
    return base64.b64encode(key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                                              serialization.NoEncryption())).decode()


async def sign_in(page: Any, user: str, password: str) -> None:
    await page.fill("#username", user)
    await page.fill("#password", password)


async def open_registration(t: Tab, url: str, user: str, password: str, pin: str | None = None,
                            otp: str | None = None) -> bool:
    """Open a registration page and sign in (with the credential's factors when given): at the ceremony?"""
    await t.page.goto(url)
    await sign_in(t.page, user, password)
    if pin is not None:
        await t.page.fill("#pin", pin)
    if otp is not None:
        await t.page.fill("#otp", otp)
    async with t.page.expect_navigation():
        await t.page.click("#continue")
    return await t.page.query_selector("#passkey") is not None


async def register_passkey(t: Tab, url: str, user: str, password: str, pin: str | None = None,
                           otp: str | None = None) -> str:
    """Sign in on a registration page and create the passkey; the page's closing message."""
    assert await open_registration(t, url, user, password, pin, otp), await t.page.inner_text("body")
    async with t.page.expect_navigation():
        await t.page.click("#passkey")  # creates the passkey, then the script posts the form
    return await t.page.inner_text("#message")


async def consent_page(t: Tab, url: str, user: str, password: str) -> None:
    """The OAuth flow up to the consent page."""
    await t.page.goto(url)
    await sign_in(t.page, user, password)
    await t.page.click("#signin")
    await t.page.wait_for_selector("#approve")
    # The passkey script binds its button at DOMContentLoaded; the selector can appear earlier, and
    # a click before then does nothing (a CI run waited 30 s for a ceremony that never started).
    await t.page.wait_for_load_state("domcontentloaded")


async def use_passkey(t: Tab) -> str:
    """Run the consent page's passkey ceremony; the assertion the page will post."""
    await t.page.click("#passkey")
    await t.page.wait_for_selector('#passkey-status[data-state="done"]')  # no polling script: the CSP forbids eval
    return await t.page.input_value("#passkey-response")


async def approve(t: Tab, cb: Callback, pin: str) -> dict[str, str] | None:
    """Enter the PIN and approve: the query the client's redirect URI got, or None if the page refused."""
    while not cb.received.empty():
        cb.received.get_nowait()
    await t.page.fill("#pin", pin)
    async with t.page.expect_navigation():
        await t.page.click("#approve")
    if not cb.received.empty() or t.page.url.startswith(cb.uri):
        return await asyncio.wait_for(cb.received.get(), 30)
    return None


async def sign_with_code(http, fd: Any, sa, query: dict, verifier: str, cred: Cred, h: bytes) -> None:
    """Exchange the code, sign ``h`` with the credential token, verify it with the certificate."""
    status, body = await exchange(http, fd.dep, sa, query["code"], verifier)
    assert status == 200, body
    csc = CSC(http, fd.dep)
    status, signed = await csc.call("signatures/signHash", {"credentialID": cred.id, "hashes": [b64(h)],
                                                            "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256},
                                    body["access_token"])
    assert status == 200, signed
    _, info = await csc.call("credentials/info", {"credentialID": cred.id}, await csc.token(cred.user))
    verify(base64.b64decode(info["cert"]["certificates"][0]), h, base64.b64decode(signed["signatures"][0]))
