"""The authorization request (RFC 6749 §4.1.1 + PKCE + CSC parameters + RAR), validated once.

:func:`resolve_client` does the checks whose failure must *not* redirect (unknown client, a
redirect URI that is not registered exactly); :func:`parse_request` does everything else and
raises :class:`RedirectableError`, which the handler sends back to the (now trusted) redirect
URI. The result is stored as JSON (PAR, the browser session, the code) and read back with
:meth:`AuthorizationRequest.from_json`.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass
from typing import Any

from rssp.algorithms import check_digest, hash_from_oid
from rssp.api.parse import decode_b64, encode_b64
from rssp.errors import CSCError
from rssp.oauth.clients import Client
from rssp.oauth.errors import RedirectableError
from rssp.oauth.pkce import valid_challenge
from rssp.oauth.rar import parse_details

MAX_DESCRIPTION = 500


class NotRedirectable(Exception):
    """The client or redirect URI cannot be trusted: show an error page, never redirect."""

    def __init__(self, description: str) -> None:
        super().__init__(description)
        self.description = description


@dataclass(frozen=True)
class CredentialGrant:
    """What a ``credential`` scope asks for: a credential (or qualifier), N signatures, digests."""

    credential_id: str | None
    signature_qualifier: str | None
    num_signatures: int
    hash_oid: str | None = None
    hashes: tuple[str, ...] = ()  # standard Base64 of each digest
    labels: tuple[str | None, ...] = ()
    description: str | None = None

    @property
    def digests(self) -> tuple[bytes, ...]:
        return tuple(decode_b64(h) for h in self.hashes)


@dataclass(frozen=True)
class AuthorizationRequest:
    client_id: str
    redirect_uri: str
    code_challenge: str
    scope: str = "service"
    state: str | None = None
    lang: str | None = None
    credential: CredentialGrant | None = None
    authorization_details: list[dict[str, Any]] | None = None  # the RAR entry as sent, for the echo
    par: bool = False

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> "AuthorizationRequest":
        data = json.loads(text)
        cred = data.pop("credential")
        if cred is not None:
            cred["hashes"], cred["labels"] = tuple(cred["hashes"]), tuple(cred["labels"])
            data["credential"] = CredentialGrant(**cred)
        return cls(**data)


def resolve_redirect_uri(client: Client, redirect_uri: str | None) -> str:
    """Exact string match against a registered URI (RFC 6749 §3.1.2.3; OAuth 2.1 §4.1.1)."""
    if redirect_uri is None:
        if len(client.redirect_uris) == 1:
            return client.redirect_uris[0]
        raise NotRedirectable("Missing parameter redirect_uri")
    if redirect_uri not in client.redirect_uris:
        raise NotRedirectable("Invalid parameter redirect_uri")
    return redirect_uri


def _redirectable(fn: Any, *args: Any) -> Any:
    """Run a CSC parser; its 400 becomes a redirectable ``invalid_request``."""
    try:
        return fn(*args)
    except CSCError as err:
        raise RedirectableError("invalid_request", err.description) from None


def _positive_int(value: str | None, name: str) -> int:
    if value is None:
        raise RedirectableError("invalid_request", f"Missing parameter {name}")
    if not value.isascii() or not value.isdigit() or len(value) > 6 or int(value) < 1:
        raise RedirectableError("invalid_request", f"Invalid parameter {name}")
    return int(value)


def _digests(values: list[str], hash_oid: str | None, max_hashes: int) -> tuple[str, tuple[str, ...]]:
    if hash_oid is None:
        raise RedirectableError("invalid_request", "Missing parameter hashAlgorithmOID")
    if len(values) > max_hashes:
        raise RedirectableError("invalid_request", "Invalid parameter hashes")
    hash_name = _redirectable(hash_from_oid, hash_oid)
    digests = [_redirectable(decode_b64, v) for v in values]
    for d in digests:
        _redirectable(check_digest, d, hash_name)
    if len(set(digests)) != len(digests):
        raise RedirectableError("invalid_request", "Invalid parameter hashes")
    return hash_oid, tuple(encode_b64(d) for d in digests)


def _from_csc_params(params: dict[str, str], max_hashes: int) -> CredentialGrant:
    cred_id, qualifier = params.get("credentialID"), params.get("signatureQualifier")
    if (cred_id is None) == (qualifier is None):
        raise RedirectableError("invalid_request", "Missing parameter credentialID")
    num = _positive_int(params.get("numSignatures"), "numSignatures")
    raw = params.get("hashes", params.get("hash"))  # v1 name `hash`
    hash_oid, hashes = (None, ())
    if raw is not None:
        hash_oid, hashes = _digests(raw.split(","), params.get("hashAlgorithmOID"), max_hashes)
    return CredentialGrant(cred_id, qualifier, num, hash_oid, hashes, (None,) * len(hashes),
                           params.get("description"))


def _from_details(entry: dict[str, Any], description: str | None, max_hashes: int) -> CredentialGrant:
    docs = entry["documentDigests"]
    hash_oid, hashes = _digests([d["hash"] for d in docs], entry["hashAlgorithmOID"], max_hashes)
    labels = tuple(d.get("label") for d in docs)
    if any(label is not None and len(label) > MAX_DESCRIPTION for label in labels):
        raise RedirectableError("invalid_request", "Invalid parameter authorization_details: label")
    num = entry.get("numSignatures", len(hashes))
    return CredentialGrant(entry.get("credentialID"), entry.get("signatureQualifier"), num, hash_oid, hashes,
                           labels, description)


def _scope(params: dict[str, str], client: Client) -> str:
    default = "credential" if "authorization_details" in params else "service"
    scope = params.get("scope", default)
    if scope not in ("service", "credential"):  # also refuses "service credential": used separately
        raise RedirectableError("invalid_scope", "Invalid parameter scope")
    if scope not in client.scopes:
        raise RedirectableError("invalid_scope", "The client may not request this scope")
    return scope


def _pkce(params: dict[str, str]) -> str:
    challenge = params.get("code_challenge")
    if challenge is None:
        raise RedirectableError("invalid_request", "Missing parameter code_challenge")
    if params.get("code_challenge_method", "plain") != "S256":
        raise RedirectableError("invalid_request", "code_challenge_method must be S256")
    if not valid_challenge(challenge):
        raise RedirectableError("invalid_request", "Invalid parameter code_challenge")
    return challenge


def parse_request(params: dict[str, str], client: Client, redirect_uri: str, max_hashes: int,
                  *, par: bool = False) -> AuthorizationRequest:
    """Validate everything but the client and redirect URI (already resolved)."""
    response_type = params.get("response_type")
    if response_type is None:
        raise RedirectableError("invalid_request", "Missing parameter response_type")
    if response_type != "code":
        raise RedirectableError("unsupported_response_type", "Only response_type=code is supported")
    if "authorization_code" not in client.grant_types:
        raise RedirectableError("unauthorized_client", "The client may not use the authorization code flow")
    challenge = _pkce(params)
    scope = _scope(params, client)
    description = params.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise RedirectableError("invalid_request", "Invalid parameter description")
    credential, details = None, None
    if "authorization_details" in params:
        if scope != "credential" or "credentialID" in params or "signatureQualifier" in params:
            raise RedirectableError("invalid_request", "authorization_details replaces the CSC credential parameters")
        entry = parse_details(params["authorization_details"])
        credential, details = _from_details(entry, description, max_hashes), [entry]
    elif scope == "credential":
        credential = _from_csc_params(params, max_hashes)
    if credential is not None and len(credential.hashes) > credential.num_signatures:
        raise RedirectableError("invalid_request", "Invalid parameter numSignatures")
    return AuthorizationRequest(
        client_id=client.client_id, redirect_uri=redirect_uri, code_challenge=challenge, scope=scope,
        state=params.get("state"), lang=params.get("lang"), credential=credential,
        authorization_details=details, par=par,
    )
