"""An external OpenID Provider as a signer factor: code flow with PKCE, then a checked ID token.

For providers such as the Digital Agency's デジタル認証アプリ (JPKI on the My Number card) and
gBizID. rssp is a confidential client (``client_secret_basic``) that asks for a fresh sign-in:

- the authorization request carries ``state`` (single use, tied to the consent session),
  ``nonce`` (single use), a PKCE S256 challenge, ``max_age`` and ``prompt=login``; an ``iss`` in
  the answer (RFC 9207) must be the provider's;
- the ID token's signature is verified with joserfc against the provider's published JWKS
  (fetched over the discovery document, cached, re-fetched once for an unknown ``kid``), with
  only the asymmetric algorithms the provider announces — never ``none`` or HMAC;
- ``iss`` must be the configured issuer, ``aud`` must contain our ``client_id`` (and ``azp``
  be it when there are several audiences), ``exp``/``iat`` must hold, ``nonce`` must be this
  attempt's, ``auth_time`` must be present and within ``max_age_seconds``, and ``sub`` must
  be the subject the credential is linked to (checked by the caller).

Network calls are aiohttp with the provider's timeout; no proxy from the environment.
"""

from __future__ import annotations

import base64
import hashlib
import json
import secrets
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode

import aiohttp
from joserfc import jwt
from joserfc.errors import InvalidKeyIdError, JoseError
from joserfc.jwk import KeySet

from rssp.factors.settings import OidcProvider

ASYMMETRIC = ("RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512", "EdDSA")
LEEWAY = 60  # seconds of clock difference tolerated on exp, iat and auth_time
_CACHE_SECONDS = 3600
_MAX_RESPONSE = 256 * 1024


class OidcError(Exception):
    """The provider or its answer failed a check; the text says which (no token, no secret)."""


@dataclass(frozen=True)
class Metadata:
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    algorithms: tuple[str, ...]


@dataclass(frozen=True)
class Attempt:
    """What a sign-in must come back with: the secrets the browser never sees stay in the state row."""

    state: str
    nonce: str
    verifier: str

    @classmethod
    def new(cls) -> Attempt:
        return cls(secrets.token_urlsafe(32), secrets.token_urlsafe(32), secrets.token_urlsafe(48))

    @property
    def challenge(self) -> str:
        return base64.urlsafe_b64encode(hashlib.sha256(self.verifier.encode()).digest()).decode().rstrip("=")


_metadata: dict[str, tuple[float, Metadata]] = {}
_keys: dict[str, tuple[float, KeySet]] = {}


async def _get_json(provider: OidcProvider, url: str, **kwargs: Any) -> dict[str, Any]:
    timeout = aiohttp.ClientTimeout(total=provider.timeout_seconds)
    method = "POST" if "data" in kwargs else "GET"
    try:
        async with aiohttp.ClientSession(timeout=timeout, trust_env=False) as session, \
                session.request(method, url, allow_redirects=False, **kwargs) as resp:
            body = await resp.content.read(_MAX_RESPONSE + 1)
            if len(body) > _MAX_RESPONSE:
                raise OidcError(f"{provider.name}: answer too large from {url}")
            if resp.status != 200:
                raise OidcError(f"{provider.name}: HTTP {resp.status} from {url}")
            data = json.loads(body)
    except (aiohttp.ClientError, TimeoutError, ValueError) as exc:
        raise OidcError(f"{provider.name}: {type(exc).__name__} from {url}") from None
    if not isinstance(data, dict):
        raise OidcError(f"{provider.name}: not a JSON object from {url}")
    return data


async def metadata(provider: OidcProvider) -> Metadata:
    """The provider's discovery document (cached); its ``issuer`` must be the configured one."""
    cached = _metadata.get(provider.name)
    if cached and cached[0] > time.monotonic():
        return cached[1]
    doc = await _get_json(provider, provider.issuer.rstrip("/") + "/.well-known/openid-configuration")
    if doc.get("issuer") != provider.issuer:
        raise OidcError(f"{provider.name}: the discovery document names another issuer")
    try:
        meta = Metadata(doc["authorization_endpoint"], doc["token_endpoint"], doc["jwks_uri"],
                        tuple(a for a in doc.get("id_token_signing_alg_values_supported", ["RS256"])
                              if a in ASYMMETRIC))
    except KeyError as exc:
        raise OidcError(f"{provider.name}: the discovery document lacks {exc}") from None
    _metadata[provider.name] = (time.monotonic() + _CACHE_SECONDS, meta)
    return meta


async def _keyset(provider: OidcProvider, meta: Metadata, refresh: bool = False) -> KeySet:
    cached = _keys.get(provider.name)
    if cached and cached[0] > time.monotonic() and not refresh:
        return cached[1]
    try:
        keys = KeySet.import_key_set(await _get_json(provider, meta.jwks_uri))  # type: ignore[arg-type]
    except (JoseError, ValueError, KeyError, TypeError):
        raise OidcError(f"{provider.name}: the JWKS cannot be read") from None
    _keys[provider.name] = (time.monotonic() + _CACHE_SECONDS, keys)
    return keys


async def authorization_url(provider: OidcProvider, redirect_uri: str, attempt: Attempt) -> str:
    meta = await metadata(provider)
    query = {"response_type": "code", "client_id": provider.client_id, "redirect_uri": redirect_uri,
             "scope": " ".join(provider.scopes), "state": attempt.state, "nonce": attempt.nonce,
             "code_challenge": attempt.challenge, "code_challenge_method": "S256",
             "max_age": str(provider.max_age_seconds), "prompt": "login"}  # a fresh sign-in, every time
    sep = "&" if "?" in meta.authorization_endpoint else "?"
    return f"{meta.authorization_endpoint}{sep}{urlencode(query)}"


async def sign_in(provider: OidcProvider, code: str, redirect_uri: str, attempt: Attempt) -> dict[str, Any]:
    """Redeem the code and return the checked ID token's claims (``sub`` still to be compared)."""
    meta = await metadata(provider)
    auth = aiohttp.BasicAuth(_form(provider.client_id), _form(provider.client_secret))
    answer = await _get_json(provider, meta.token_endpoint, auth=auth, data={
        "grant_type": "authorization_code", "code": code, "redirect_uri": redirect_uri,
        "code_verifier": attempt.verifier})
    token = answer.get("id_token")
    if not isinstance(token, str):
        raise OidcError(f"{provider.name}: no ID token in the token response")
    return await verify_id_token(provider, meta, token, attempt.nonce)


def _form(value: str) -> str:
    """RFC 6749 §2.3.1: client_id and secret are form-urlencoded before HTTP Basic."""
    return quote_plus(value)


async def verify_id_token(provider: OidcProvider, meta: Metadata, token: str, nonce: str,
                          now: float | None = None) -> dict[str, Any]:
    if not meta.algorithms:
        raise OidcError(f"{provider.name}: the provider announces no asymmetric ID token algorithm")
    try:
        try:
            claims = jwt.decode(token, await _keyset(provider, meta), algorithms=list(meta.algorithms)).claims
        except InvalidKeyIdError:  # the provider rotated its keys since they were cached
            claims = jwt.decode(token, await _keyset(provider, meta, refresh=True),
                                algorithms=list(meta.algorithms)).claims
    except JoseError as exc:
        raise OidcError(f"{provider.name}: ID token refused ({exc.error})") from None
    check_claims(provider, claims, nonce, time.time() if now is None else now)
    return claims


def check_claims(provider: OidcProvider, claims: dict[str, Any], nonce: str, now: float) -> None:
    """OpenID Connect Core §3.1.3.7 and §3.1.2.1 (max_age), as rssp needs them."""
    aud = claims.get("aud")
    audiences = aud if isinstance(aud, list) else [aud]
    if claims.get("iss") != provider.issuer:
        raise OidcError(f"{provider.name}: the ID token is from another issuer")
    if provider.client_id not in audiences or (len(audiences) > 1 and claims.get("azp") != provider.client_id):
        raise OidcError(f"{provider.name}: the ID token is for another audience")
    if not _number(claims.get("exp")) or claims["exp"] + LEEWAY < now:
        raise OidcError(f"{provider.name}: the ID token has expired")
    if not _number(claims.get("iat")) or claims["iat"] - LEEWAY > now:
        raise OidcError(f"{provider.name}: the ID token is not yet valid")
    if not isinstance(claims.get("nonce"), str) or not secrets.compare_digest(claims["nonce"], nonce):
        raise OidcError(f"{provider.name}: the ID token is not for this sign-in (nonce)")
    if not _number(claims.get("auth_time")) or now - claims["auth_time"] > provider.max_age_seconds + LEEWAY:
        raise OidcError(f"{provider.name}: the sign-in at the provider is too old (auth_time)")
    if not isinstance(claims.get("sub"), str) or not claims["sub"]:
        raise OidcError(f"{provider.name}: the ID token has no subject")


def _number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
