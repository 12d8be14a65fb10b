"""Helpers for the CSC v2.2 tests: a signer of their own, OAuth flows for the lifecycle scopes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlparse

import aiohttp

from client import OTP
from deployment import Cred, Deployment
from oauth_helpers import OAuthClient, FormBrowser, add_client, auth_params, exchange, pkce, query_of

URI = "https://cloudsignatureconsortium.org/2025/"
REDIRECT = "https://rp.example/callback"
LIFECYCLE_SCOPES = ("service", "credential", "credential-creation", "credential-deletion")


def lifecycle_client(dep: Deployment) -> OAuthClient:
    """One confidential client per deployment with all four CSC v2.2 scopes."""
    cache = dep.__dict__.setdefault("_lifecycle_client", {})
    if "client" not in cache:
        cache["client"] = add_client(dep, "EUDI RP", REDIRECT, "--scopes", *LIFECYCLE_SCOPES)
    return cache["client"]


def signer_of_own(dep: Deployment, name: str) -> str:
    """A user of the test's own (credentials/create counts each signer's credentials)."""
    if name not in dep.passwords:
        dep.add_user(name, f"{name}-password")
    return name


async def approve(dep: Deployment, params: dict[str, str], user: str, *, pin: str | None = None,
                  otp: str | None = None) -> dict[str, str]:
    """The browser side: login, then (for every scope but service) the consent page; the redirect's query."""
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(params)
        assert page.status == 200, page.text[:2000]
        page = await browser.login(user)
        if page.status == 200:  # a consent page
            data = {"action": "approve"}
            if pin is not None:
                data["pin"] = pin
            if otp is not None:
                data["otp"] = otp
            page = await browser.post("consent", data)
        assert page.status == 303, page.text[:2000]
        return query_of(page.location or "")


async def token_for(http: aiohttp.ClientSession, dep: Deployment, user: str, *, pin: str | None = None,
                    otp: str | None = None, **params: str) -> dict[str, Any]:
    """The whole code flow for ``params`` (scope and/or authorization_details); the token answer."""
    client = lifecycle_client(dep)
    verifier, challenge = pkce()
    query = await approve(dep, auth_params(client, challenge, **params), user, pin=pin, otp=otp)
    assert "code" in query, query
    status, body = await exchange(http, dep, client, query["code"], verifier)
    assert status == 200, body
    return body


def creation(policy: str | None = None, kind: str = f"{URI}credential-creation") -> str:
    entry: dict[str, Any] = {"type": kind}
    if policy is not None:
        entry["credentialCreationRequest"] = {"certificatePolicy": policy}
    return json.dumps([entry])


def deletion(credential_id: str, kind: str = f"{URI}credential-deletion") -> str:
    return json.dumps([{"type": kind, "credentialID": credential_id}])


@dataclass(frozen=True)
class Made:
    """A credential made through credentials/create, with the secrets shown once."""

    id: str
    pin: str
    seed: str | None

    def as_cred(self, user: str) -> Cred:
        return Cred(self.id, user, "ec-p256", 1, self.pin, self.seed)


def made(body: dict[str, Any]) -> Made:
    seed = parse_qs(urlparse(body["otpauthURI"]).query)["secret"][0] if "otpauthURI" in body else None
    return Made(body["credentialID"], body["PIN"], seed)


def otp_for(cred: Cred) -> str | None:
    return OTP.code(cred) if cred.totp_seed else None
