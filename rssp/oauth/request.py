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

from rssp.algorithms import hash_from_oid, oid_for_length
from rssp.api.parse import decode_b64, decode_digests, encode_b64
from rssp.errors import CSCError, both_passed
from rssp.oauth.clients import Client
from rssp.oauth.errors import RedirectableError
from rssp.oauth.pkce import valid_challenge
from rssp.oauth.rar import certificate_policy, parse_details
from rssp.oauth.scopes import CREATION, CREDENTIAL, DELETION, SCOPES, SERVICE

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

    def __post_init__(self) -> None:
        """One label per digest, always: the consent page pairs them, and a short list would hide a document."""
        if len(self.labels) != len(self.hashes):
            raise ValueError("a credential grant needs one label (or None) per digest")

    @property
    def digests(self) -> tuple[bytes, ...]:
        return tuple(decode_b64(h) for h in self.hashes)


@dataclass(frozen=True)
class LifecycleGrant:
    """What ``credential-creation`` (a certificate policy, or the default) or ``credential-deletion``
    (one credential) asks for."""

    credential_id: str | None = None
    certificate_policy: str | None = None


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
    lifecycle: LifecycleGrant | None = None

    def credential_grant(self) -> CredentialGrant:
        """The grant of a ``credential`` scope request (parsing refuses one without it)."""
        if self.credential is None:
            raise ValueError(f"this {self.scope} request carries no credential grant")
        return self.credential

    def to_json(self) -> str:
        return json.dumps(asdict(self), separators=(",", ":"))

    @classmethod
    def from_json(cls, text: str) -> AuthorizationRequest:
        data = json.loads(text)
        cred = data.pop("credential")
        if cred is not None:
            cred["hashes"], cred["labels"] = tuple(cred["hashes"]), tuple(cred["labels"])
            data["credential"] = CredentialGrant(**cred)
        lifecycle = data.pop("lifecycle", None)  # absent in requests stored before CSC v2.2 support
        if lifecycle is not None:
            data["lifecycle"] = LifecycleGrant(**lifecycle)
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
    digests = _redirectable(decode_digests, values, hash_name)  # "Invalid parameter hashes" if repeated
    return hash_oid, tuple(encode_b64(d) for d in digests)


def _from_csc_params(params: dict[str, str], max_hashes: int) -> CredentialGrant:
    cred_id, qualifier = params.get("credentialID"), params.get("signatureQualifier")
    if (cred_id is None) == (qualifier is None):
        raise RedirectableError("invalid_request", "Missing parameter credentialID")
    num = _positive_int(params.get("numSignatures"), "numSignatures")
    if "hash" in params and "hashes" in params:  # v1 and v2 names of one parameter
        raise RedirectableError("invalid_request", both_passed("hash", "hashes").description)
    raw = params.get("hashes", params.get("hash"))  # v1 name `hash`
    hash_oid: str | None = None
    hashes: tuple[str, ...] = ()
    if raw is not None:
        values = raw.split(",")
        hash_oid = params.get("hashAlgorithmOID")
        if hash_oid is None and "hashes" not in params:  # CSC v1 (documenso) names no algorithm: by length
            hash_oid = _redirectable(oid_for_length, _redirectable(decode_b64, values[0]))
        hash_oid, hashes = _digests(values, hash_oid, max_hashes)
    return CredentialGrant(cred_id, qualifier, num, hash_oid, hashes, (None,) * len(hashes),
                           params.get("description"))


def _from_details(entry: dict[str, Any], description: str | None, max_hashes: int) -> CredentialGrant:
    docs = entry.get("documentDigests", [])
    hash_oid: str | None = None
    hashes: tuple[str, ...] = ()
    if docs:
        hash_oid, hashes = _digests([d["hash"] for d in docs], entry["hashAlgorithmOID"], max_hashes)
    labels = tuple(d.get("label") for d in docs)
    if any(label is not None and len(label) > MAX_DESCRIPTION for label in labels):
        raise RedirectableError("invalid_request", "Invalid parameter authorization_details: label")
    num = entry.get("numSignatures", len(hashes))
    return CredentialGrant(entry.get("credentialID"), entry.get("signatureQualifier"), num, hash_oid, hashes,
                           labels, description)


def _scope(params: dict[str, str], client: Client, details_scope: str | None) -> str:
    scope = params.get("scope", details_scope or SERVICE)
    if scope not in SCOPES:  # also refuses "service credential": scopes are used separately
        raise RedirectableError("invalid_scope", "Invalid parameter scope")
    if details_scope is not None and scope != details_scope:
        raise RedirectableError("invalid_scope", "scope does not match the type of authorization_details")
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
    entry: dict[str, Any] | None = None
    details_scope: str | None = None
    if "authorization_details" in params:
        if "credentialID" in params or "signatureQualifier" in params:
            raise RedirectableError("invalid_request", "authorization_details replaces the CSC credential parameters")
        details_scope, entry = parse_details(params["authorization_details"])
    scope = _scope(params, client, details_scope)
    description = params.get("description")
    if description is not None and len(description) > MAX_DESCRIPTION:
        raise RedirectableError("invalid_request", "Invalid parameter description")
    credential, lifecycle = None, None
    if scope == CREDENTIAL:
        credential = (_from_details(entry, description, max_hashes) if entry is not None
                      else _from_csc_params(params, max_hashes))
        if len(credential.hashes) > credential.num_signatures:
            raise RedirectableError("invalid_request", "Invalid parameter numSignatures")
    elif scope in (CREATION, DELETION):
        lifecycle = _lifecycle(scope, entry, params)
    return AuthorizationRequest(
        client_id=client.client_id, redirect_uri=redirect_uri, code_challenge=challenge, scope=scope,
        state=params.get("state"), lang=params.get("lang"), credential=credential,
        authorization_details=[entry] if entry is not None else None, par=par, lifecycle=lifecycle,
    )


def _lifecycle(scope: str, entry: dict[str, Any] | None, params: dict[str, str]) -> LifecycleGrant:
    """Creation: the certificate policy of the RAR entry, if any. Deletion: the credential, from the
    RAR entry or the ``credentialID`` parameter (required)."""
    if scope == CREATION:
        return LifecycleGrant(certificate_policy=certificate_policy(entry) if entry is not None else None)
    credential_id = entry["credentialID"] if entry is not None else params.get("credentialID")
    if credential_id is None:
        raise RedirectableError("invalid_request", "Missing parameter credentialID")
    return LifecycleGrant(credential_id=credential_id)
