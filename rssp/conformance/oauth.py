"""The OAuth 2.0 side of the profiles: discovery, PKCE, PAR, the signer's pages, the token.

Endpoints are found the way each client finds them: from ``oauth2Issuer`` through RFC 8414
metadata (EUDI), or by joining ``oauth2/authorize`` etc. to ``oauth2`` (CSC v1, documenso).

The signer's part (login, consent) is played by :class:`FormFiller`: it reads each HTML page
the server shows, fills the fields a person would (user name and password; the credential's
PIN and one-time password; nothing on a creation page) and presses the approving button,
until the server redirects to the client's redirect URI. Servers whose pages need a browser
can be driven by hand instead (``--manual-oauth``): the kit prints the URL and reads the
redirect URL the browser ends at.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import sys
from dataclasses import dataclass
from html.parser import HTMLParser
from typing import Any
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

import aiohttp

from rssp.conformance.session import Run, StepFailed

_MAX_PAGES = 8


@dataclass(frozen=True)
class Endpoints:
    authorize: str
    token: str
    par: str | None = None
    revoke: str | None = None


async def discover(run: Run, info: dict[str, Any]) -> Endpoints:
    """From ``oauth2Issuer`` (RFC 8414 metadata) or the ``oauth2`` base URI of ``info``."""
    issuer = info.get("oauth2Issuer")
    if issuer:
        url = f"{issuer.rstrip('/')}/.well-known/oauth-authorization-server"
        async with run.http.get(url) as resp:
            if resp.status != 200:
                raise run.fail("oauth2 metadata", f"HTTP {resp.status} from {url}")
            meta = await resp.json(content_type=None)
        run.record("oauth2 metadata", True, "RFC 8414")
        return Endpoints(meta["authorization_endpoint"], meta["token_endpoint"],
                         meta.get("pushed_authorization_request_endpoint"), meta.get("revocation_endpoint"))
    base = info.get("oauth2")
    if not base:
        raise run.fail("info", "neither oauth2 nor oauth2Issuer: the client cannot find the authorization server")
    base = base.rstrip("/")
    return Endpoints(f"{base}/oauth2/authorize", f"{base}/oauth2/token", None, f"{base}/oauth2/revoke")


def pkce() -> tuple[str, str]:
    verifier = secrets.token_urlsafe(48)
    challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=").decode()
    return verifier, challenge


@dataclass(frozen=True)
class Signer:
    """What the person types on the pages: login, and the credential's factors for a consent."""

    user: str
    password: str
    pin: str | None = None
    otp: str | None = None


async def authorization_code(run: Run, ep: Endpoints, params: dict[str, str], signer: Signer, *,
                             use_par: bool = False) -> tuple[str, str]:
    """The whole browser side for ``params`` (scope, RAR, CSC parameters): the code and the PKCE verifier."""
    target = run.target
    if not (target.client_id and target.redirect_uri):
        raise run.fail("oauth2/authorize", "no OAuth client: give --client-id and --redirect-uri")
    verifier, challenge = pkce()
    state = secrets.token_urlsafe(12)
    query = {"response_type": "code", "client_id": target.client_id, "redirect_uri": target.redirect_uri,
             "code_challenge": challenge, "code_challenge_method": "S256", "state": state, **params}
    if use_par and ep.par:
        data = await _form_post(run, ep.par, query, "oauth2/pushed_authorize", expect=201)
        query = {"client_id": target.client_id, "request_uri": data["request_uri"], "state": state}
    url = f"{ep.authorize}?{urlencode(query)}"
    redirect = input_redirect(url) if target.manual_oauth else await FormFiller(run, signer).walk(url)
    answer = {k: v[0] for k, v in parse_qs(urlsplit(redirect).query).items()}
    if "code" not in answer or answer.get("state") != state:
        raise run.fail("oauth2/authorize", f"no code for the client: {answer.get('error')} "
                                           f"{answer.get('error_description', '')}".strip())
    run.record("oauth2/authorize", True, f"scope {params.get('scope') or 'from authorization_details'}")
    return answer["code"], verifier


async def token(run: Run, ep: Endpoints, code: str, verifier: str, **extra: str) -> dict[str, Any]:
    """``grant_type=authorization_code`` with PKCE; client_secret_basic when the client has a secret."""
    form = {"grant_type": "authorization_code", "code": code, "redirect_uri": run.target.redirect_uri or "",
            "code_verifier": verifier, "client_id": run.target.client_id or "", **extra}
    answer: dict[str, Any] = await _form_post(run, ep.token, form, "oauth2/token")
    return answer


async def revoke(run: Run, ep: Endpoints, value: str) -> None:
    if not ep.revoke:
        run.record("oauth2/revoke", None, "not advertised")
        return
    await _form_post(run, ep.revoke, {"token": value, "client_id": run.target.client_id or ""}, "oauth2/revoke",
                     expect=(200, 204))


async def _form_post(run: Run, url: str, form: dict[str, str], name: str, *,
                     expect: int | tuple[int, ...] = 200) -> Any:
    target = run.target
    headers = {}
    if target.client_secret:
        headers["Authorization"] = aiohttp.encode_basic_auth(target.client_id or "", target.client_secret)
    async with run.http.post(url, data=form, headers=headers) as resp:
        status, text = resp.status, await resp.text()
    if status not in (expect if isinstance(expect, tuple) else (expect,)):
        raise run.fail(name, f"HTTP {status}: {text[:200]}")
    run.record(name, True, f"HTTP {status}")
    try:
        return json.loads(text) if text else None
    except ValueError:
        return None


def input_redirect(url: str) -> str:
    print(f"Open this URL, sign in and approve, then paste the URL the browser ends at:\n{url}", file=sys.stderr)
    return sys.stdin.readline().strip()


class FormFiller:
    """Plays the signer on the server's HTML pages (cookies kept by the run's HTTP session)."""

    def __init__(self, run: Run, signer: Signer) -> None:
        self.run = run
        self.signer = signer

    async def walk(self, url: str) -> str:
        method, data = "GET", None
        for _ in range(_MAX_PAGES):
            async with self.run.http.request(method, url, data=data, allow_redirects=False) as resp:
                status, location, text = resp.status, resp.headers.get("Location"), await resp.text()
            if location:
                url = urljoin(url, location)
                if url.startswith(self.run.target.redirect_uri or "\0"):
                    return url
                method, data = "GET", None
                continue
            forms = _forms(text)
            if status >= 400:  # a refused form is never sent again: wrong factors would lock the credential
                raise self.run.fail("oauth2/authorize", f"HTTP {status} page: {_text_of(text)[:300]}")
            if not forms:
                raise StepFailed("oauth2/authorize: a page without a form and without a redirect")
            action, data = self._fill(forms[0])
            method, url = "POST", urljoin(url, action)
        raise self.run.fail("oauth2/authorize", "the pages never sent the browser back to the client")

    def _fill(self, form: dict[str, Any]) -> tuple[str, dict[str, str]]:
        values: dict[str, str] = {}
        fields = {name: kind for name, kind, _ in form["inputs"]}
        for name, kind, value in form["inputs"]:
            lowered = name.lower()
            if kind == "hidden":
                values[name] = value
            elif lowered in ("username", "user", "login", "email"):
                values[name] = self.signer.user
            elif lowered == "password" or (kind == "password" and "pin" not in fields and lowered != "pin"):
                values[name] = self.signer.password
            elif lowered == "pin" and self.signer.pin is not None:
                values[name] = self.signer.pin
            elif lowered in ("otp", "totp") and self.signer.otp is not None:
                values[name] = self.signer.otp
        for name, value in form["buttons"]:
            if name and value.lower() not in ("deny", "cancel", "reject"):
                values[name] = value
                break
        return form["action"], values


class _FormParser(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.forms: list[dict[str, Any]] = []
        self.text: list[str] = []
        self._skip = 0  # inside <style>/<script>/<title>: not text a person reads

    def handle_endtag(self, tag: str) -> None:
        if tag in ("style", "script", "title") and self._skip:
            self._skip -= 1

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        a = {k: v or "" for k, v in attrs}
        if tag in ("style", "script", "title"):
            self._skip += 1
        elif tag == "form":
            self.forms.append({"action": a.get("action", ""), "inputs": [], "buttons": []})
        elif tag == "input" and self.forms and a.get("name"):
            kind = a.get("type", "text").lower()
            if kind == "submit":
                self.forms[-1]["buttons"].append((a["name"], a.get("value", "")))
            else:
                self.forms[-1]["inputs"].append((a["name"], kind, a.get("value", "")))
        elif tag == "button" and self.forms:
            self.forms[-1]["buttons"].append((a.get("name", ""), a.get("value", "")))

    def handle_data(self, data: str) -> None:
        if not self._skip:
            self.text.append(data)


def _forms(html: str) -> list[dict[str, Any]]:
    parser = _FormParser()
    parser.feed(html)
    return parser.forms


def _text_of(html: str) -> str:
    parser = _FormParser()
    parser.feed(html)
    return " ".join(t.strip() for t in parser.text if t.strip())
