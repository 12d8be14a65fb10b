"""Helpers for the OAuth tests: clients registered with the CLI, PKCE, a form-level browser,
a callback server standing in for the signature application, and token requests."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import re
import secrets
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import aiohttp
from aiohttp import web
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

from client import OTP, SHA256
from deployment import Cred, Deployment, free_port

AUTHZ = "/csc/v2/oauth2/authorize"


@dataclass(frozen=True)
class OAuthClient:
    client_id: str
    secret: str | None
    redirect_uri: str


def add_client(dep: Deployment, name: str, redirect_uri: str, *extra: str) -> OAuthClient:
    out = dep.rssp_json("client", "add", str(dep.directory), name, "--redirect-uri", redirect_uri, *extra)
    return OAuthClient(out["client_id"], out.get("client_secret"), redirect_uri)


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def csrf_of(html: str) -> str:
    match = re.search(r'name="csrf" value="([^"]+)"', html)
    assert match, html[:2000]
    return match.group(1)


def query_of(location: str) -> dict[str, str]:
    return {k: v[0] for k, v in parse_qs(urlsplit(location).query).items()}


def credential_params(cred: Cred, digests: list[bytes], num: int | None = None) -> dict[str, str]:
    params = {"scope": "credential", "credentialID": cred.id, "numSignatures": str(num or len(digests))}
    if digests:
        params.update(hashes=",".join(b64url(d) for d in digests), hashAlgorithmOID=SHA256)
    return params


def auth_params(client: OAuthClient, challenge: str, **extra: str) -> dict[str, str]:
    return {"response_type": "code", "client_id": client.client_id, "redirect_uri": client.redirect_uri,
            "code_challenge": challenge, "code_challenge_method": "S256", "state": secrets.token_urlsafe(8),
            **extra}


@dataclass
class Page:
    status: int
    text: str
    location: str | None
    headers: Any = None


class FormBrowser:
    """A cookie-keeping HTTP client that fills the login/consent forms like a browser would."""

    def __init__(self, dep: Deployment) -> None:
        self.dep = dep
        self.session = aiohttp.ClientSession(cookie_jar=aiohttp.CookieJar(unsafe=True))
        self.csrf: str | None = None

    async def __aenter__(self) -> FormBrowser:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.session.close()

    async def _page(self, resp: aiohttp.ClientResponse) -> Page:
        text = await resp.text()
        if 'name="csrf"' in text:
            self.csrf = csrf_of(text)
        return Page(resp.status, text, resp.headers.get("Location"), resp.headers)

    async def authorize(self, params: dict[str, str]) -> Page:
        url = f"{self.dep.base}{AUTHZ}?{urlencode(params)}"
        async with self.session.get(url, allow_redirects=False) as resp:
            return await self._page(resp)

    async def post(self, step: str, data: dict[str, str], *, csrf: bool = True) -> Page:
        if csrf:
            data = {"csrf": self.csrf or "", **data}
        async with self.session.post(f"{self.dep.base}/csc/v2/oauth2/{step}", data=data,
                                     allow_redirects=False) as resp:
            return await self._page(resp)

    async def login(self, user: str = "alice") -> Page:
        return await self.post("login", {"username": user, "password": self.dep.passwords[user]})

    async def consent(self, cred: Cred, pin: str | None = None, otp: bool = True) -> Page:
        data = {"pin": pin if pin is not None else cred.pin, "action": "approve"}
        if cred.totp_seed and otp:
            data["otp"] = OTP.code(cred)
        return await self.post("consent", data)


async def get_code(dep: Deployment, params: dict[str, str], cred: Cred | None = None, user: str = "alice") -> str:
    """Run the whole browser side; return the code (asserting the state came back)."""
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(params)
        assert page.status == 200, page.text
        page = await browser.login(user)
        if cred is not None:
            assert page.status == 200, page.text
            page = await browser.consent(cred)
        assert page.status == 303, page.text
        query = query_of(page.location or "")
        assert query.get("state") == params.get("state"), query
        assert "code" in query, query
        return query["code"]


async def token_request(http: aiohttp.ClientSession, dep: Deployment, client: OAuthClient, form: dict[str, str],
                        *, auth: str = "basic", endpoint: str = "token") -> tuple[int, Any]:
    headers = {}
    form = dict(form)
    if auth == "basic" and client.secret:
        headers["Authorization"] = aiohttp.encode_basic_auth(client.client_id, client.secret)
    else:
        form["client_id"] = client.client_id
        if auth == "post" and client.secret:
            form["client_secret"] = client.secret
    async with http.post(f"{dep.base}/csc/v2/oauth2/{endpoint}", data=form, headers=headers) as resp:
        text = await resp.text()
        try:
            return resp.status, (await resp.json(content_type=None)) if text else None
        except ValueError:
            return resp.status, text


async def exchange(http: aiohttp.ClientSession, dep: Deployment, client: OAuthClient, code: str, verifier: str | None,
                   **extra: str) -> tuple[int, Any]:
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": client.redirect_uri, **extra}
    if verifier is not None:
        form["code_verifier"] = verifier
    return await token_request(http, dep, client, form)


def verify_signature(cert: x509.Certificate, digest_value: bytes, signature: bytes) -> None:
    """Raises if the raw signature does not verify over the SHA-256 digest."""
    key = cert.public_key()
    if isinstance(key, ec.EllipticCurvePublicKey):
        key.verify(signature, digest_value, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        assert isinstance(key, rsa.RSAPublicKey), key
        key.verify(signature, digest_value, padding.PKCS1v15(), Prehashed(hashes.SHA256()))


@dataclass
class Callback:
    """The signature application's redirect endpoint: records every query it receives."""

    port: int = 0
    received: asyncio.Queue = field(default_factory=asyncio.Queue)
    runner: web.AppRunner | None = None

    @property
    def uri(self) -> str:
        return f"http://127.0.0.1:{self.port}/callback"

    async def start(self) -> Callback:
        async def handle(request: web.Request) -> web.Response:
            await self.received.put(dict(request.query))
            return web.Response(text="<!DOCTYPE html><title>done</title><p id='done'>done</p>",
                                content_type="text/html")

        app = web.Application()
        app.router.add_get("/callback", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        self.port = free_port()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()
        return self

    async def stop(self) -> None:
        if self.runner:
            await self.runner.cleanup()


async def credential_token(http: aiohttp.ClientSession, dep: Deployment, client: OAuthClient, cred: Cred,
                           digests: list[bytes], num: int | None = None, **extra: str) -> dict[str, Any]:
    """The whole code flow for scope ``credential``: the token endpoint's answer."""
    verifier, challenge = pkce()
    params = auth_params(client, challenge, **credential_params(cred, digests, num), **extra)
    code = await get_code(dep, params, cred)
    status, body = await exchange(http, dep, client, code, verifier)
    assert status == 200, body
    return body


def session_cookie(browser: FormBrowser) -> str | None:
    """The value of the authorization session cookie the browser holds now."""
    for cookie in browser.session.cookie_jar:
        if cookie.key == "rssp_oauth_session":
            return cookie.value
    return None
