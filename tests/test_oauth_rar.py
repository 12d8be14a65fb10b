"""Rich Authorization Requests (RFC 9396, CSC v2.0.0.2 / v2.2 types): every refusal, over real HTTP.

Each row of :data:`ROWS` is an ``authorization_details`` value (or a request around one) the
server must refuse. It is sent twice, to the running server on both backends: pushed
(``oauth2/pushed_authorize`` answers 400 JSON with the RFC 6749 §5.2 error) and in the query of
``oauth2/authorize`` (the client and redirect URI are trusted, so the browser goes back to the
client with ``error`` and ``error_description``, RFC 6749 §4.1.2.1). The expected texts are
written here, not read from the implementation. Then the refusals that need the signer (a
credential that is not theirs) and the token endpoint's check that the ``authorization_details``
it is sent are the ones that were authorized.
"""

from __future__ import annotations

import base64
import json
from dataclasses import dataclass, field
from typing import Any

import aiohttp
import pytest

from client import SHA256, b64, digest
from deployment import Deployment
from lifecycle_helpers import URI, approve, lifecycle_client
from oauth_helpers import OAuthClient, add_client, auth_params, exchange, pkce, query_of, token_request

SHA384 = "2.16.840.1.101.3.4.2.2"
BAD = "Invalid parameter authorization_details: "
D1, D2 = digest(b"rar one"), digest(b"rar two")


@dataclass(frozen=True)
class Row:
    name: str
    details: Any  # a str is sent as is; anything else as JSON
    description: str
    error: str = "invalid_request"
    params: dict[str, str] = field(default_factory=dict)
    client: str = "all"  # "all": the four v2.2 scopes; "default": service and credential only


def _cred(**entry: Any) -> list[dict[str, Any]]:
    """A credential entry with one digest, changed by ``entry`` (a None value drops the member)."""
    base: dict[str, Any] = {"type": f"{URI}credential", "credentialID": "CRED", "numSignatures": 1,
                            "hashAlgorithmOID": SHA256, "documentDigests": [{"hash": b64(D1), "label": "A"}]}
    base.update(entry)
    return [{k: v for k, v in base.items() if v is not None}]


def _digest(**member: Any) -> list[dict[str, Any]]:
    return _cred(documentDigests=[{"hash": b64(D1), "label": "A", **member}])


ROWS = [
    # the value itself
    Row("not JSON", "[{", BAD + "not JSON"),
    Row("nested deeper than the parser goes", "[" * 1000 + "]" * 1000, BAD + "not JSON"),
    Row("duplicated member", '[{"type": "credential", "type": "credential"}]', BAD + "duplicated member"),
    Row("an object, not an array", {"type": "credential"}, BAD + "expected an array with one object"),
    Row("an empty array", [], BAD + "expected an array with one object"),
    Row("two entries", _cred() + _cred(), BAD + "expected an array with one object"),
    Row("an array of a string", ["credential"], BAD + "expected an array with one object"),
    # type
    Row("no type", _cred(type=None), BAD + "unsupported type"),
    Row("unknown type", _cred(type="payment_initiation"), BAD + "unsupported type"),
    Row("type not a string", _cred(type=["credential"]), BAD + "unsupported type"),
    Row("a 2025 type under a near URI", _cred(type=f"{URI}credentials"), BAD + "unsupported type"),
    Row("acr_values not a string", _cred(acr_values=["x"]), BAD + "acr_values"),
    # credential: which credential
    Row("credentialID not a string", _cred(credentialID=7), BAD + "credentialID"),
    Row("signatureQualifier not a string", _cred(credentialID=None, signatureQualifier=True),
        BAD + "signatureQualifier"),
    Row("both credentialID and signatureQualifier", _cred(signatureQualifier="eu_eidas_qes"),
        BAD + "exactly one of credentialID and signatureQualifier"),
    Row("neither credentialID nor signatureQualifier", _cred(credentialID=None),
        BAD + "exactly one of credentialID and signatureQualifier"),
    Row("credentialID beside the CSC parameter", _cred(), "authorization_details replaces the CSC credential "
        "parameters", params={"credentialID": "CRED"}),
    Row("signatureQualifier beside the entry", _cred(), "authorization_details replaces the CSC credential "
        "parameters", params={"signatureQualifier": "eu_eidas_qes"}),
    # credential: the count
    Row("no digests and no numSignatures", _cred(documentDigests=None, numSignatures=None), BAD + "numSignatures"),
    Row("numSignatures zero", _cred(numSignatures=0), BAD + "numSignatures"),
    Row("numSignatures negative", _cred(numSignatures=-1), BAD + "numSignatures"),
    Row("numSignatures a string", _cred(numSignatures="1"), BAD + "numSignatures"),
    Row("numSignatures a boolean", _cred(numSignatures=True), BAD + "numSignatures"),
    Row("numSignatures a float", _cred(numSignatures=1.5), BAD + "numSignatures"),
    Row("fewer signatures than digests", _cred(numSignatures=1, documentDigests=[{"hash": b64(D1)},
                                                                                  {"hash": b64(D2)}]),
        "Invalid parameter numSignatures"),
    # credential: the digests
    Row("documentDigests an object", _cred(documentDigests={"hash": b64(D1)}), BAD + "documentDigests"),
    Row("documentDigests empty", _cred(documentDigests=[]), BAD + "documentDigests"),
    Row("documentDigests of strings", _cred(documentDigests=[b64(D1)]), BAD + "documentDigests"),
    Row("a digest without hash", _cred(documentDigests=[{"label": "A"}]), BAD + "documentDigests"),
    Row("a hash not a string", _digest(hash=5), BAD + "documentDigests"),
    Row("a label not a string", _digest(label=["A"]), BAD + "label"),
    Row("a label over 500 characters", _digest(label="L" * 501), BAD + "label"),
    Row("a digest's circumstantialData not a string", _digest(circumstantialData={}), BAD + "circumstantialData"),
    Row("an unknown hashType", _digest(hashType="DTBS"), BAD + "hashType"),
    Row("a hashType not a string", _digest(hashType=1), BAD + "hashType"),
    Row("digests without hashAlgorithmOID", _cred(hashAlgorithmOID=None), BAD + "hashAlgorithmOID"),
    Row("hashAlgorithmOID not a string", _cred(hashAlgorithmOID=1), BAD + "hashAlgorithmOID"),
    Row("an unknown hashAlgorithmOID", _cred(hashAlgorithmOID="1.2.3.4"), "Invalid parameter hashAlgorithmOID"),
    Row("a hash not in Base64", _digest(hash="not base64!"), "Invalid Base64 hash string parameter"),
    Row("a hash of the wrong length", _cred(hashAlgorithmOID=SHA384), "Invalid digest value length"),
    Row("the same digest twice", _cred(numSignatures=2, documentDigests=[{"hash": b64(D1)}, {"hash": b64(D1)}]),
        "Invalid parameter hashes"),
    Row("the same digest in Base64 and base64url",
        _cred(numSignatures=2, documentDigests=[{"hash": b64(D1)},
                                                {"hash": base64.urlsafe_b64encode(D1).decode().rstrip("=")}]),
        "Invalid parameter hashes"),
    Row("circumstantialData not a string", _cred(circumstantialData=1), BAD + "circumstantialData"),
    # credential: v2.2 signed_props
    Row("signed_props an object", _cred(signed_props={"attribute_name": "n"}), BAD + "signed_props"),
    Row("signed_props over 16", _cred(signed_props=[{"attribute_name": f"n{i}"} for i in range(17)]),
        BAD + "signed_props"),
    Row("a signed_prop not an object", _cred(signed_props=["n"]), BAD + "signed_props"),
    Row("a signed_prop without attribute_name", _cred(signed_props=[{"attribute_value": "v"}]), BAD + "signed_props"),
    Row("a signed_prop value not a string", _cred(signed_props=[{"attribute_name": "n", "attribute_value": 1}]),
        BAD + "signed_props"),
    # the scope
    Row("scope says service", _cred(), "scope does not match the type of authorization_details", "invalid_scope",
        params={"scope": "service"}),
    Row("scope says creation", _cred(), "scope does not match the type of authorization_details", "invalid_scope",
        params={"scope": "credential-creation"}),
    Row("a creation entry for a client without that scope", [{"type": f"{URI}credential-creation"}],
        "The client may not request this scope", "invalid_scope", client="default"),
    Row("a deletion entry for a client without that scope", [{"type": "credential_deletion", "credentialID": "c"}],
        "The client may not request this scope", "invalid_scope", client="default"),
    # credential-creation
    Row("credentialCreationRequest not an object", [{"type": f"{URI}credential-creation",
                                                     "credentialCreationRequest": "p"}],
        BAD + "credentialCreationRequest"),
    Row("certificatePolicy not a string", [{"type": "credential_creation",
                                            "credentialCreationRequest": {"certificatePolicy": 1}}],
        BAD + "certificatePolicy"),
    Row("subjectData not an object", [{"type": f"{URI}credential-creation",
                                       "credentialCreationRequest": {"subjectData": "CN=x"}}], BAD + "subjectData"),
    # credential-deletion
    Row("a deletion without credentialID", [{"type": f"{URI}credential-deletion"}], BAD + "credentialID"),
    Row("a deletion with a null credentialID", [{"type": f"{URI}credential-deletion", "credentialID": None}],
        BAD + "credentialID"),
    Row("a deletion credentialID not a string", [{"type": "credential_deletion", "credentialID": ["c"]}],
        BAD + "credentialID"),
]


def _clients(dep: Deployment) -> dict[str, OAuthClient]:
    cache = dep.__dict__.setdefault("_rar_clients", {})
    if not cache:
        cache["all"] = lifecycle_client(dep)
        cache["default"] = add_client(dep, "RAR default scopes", "https://rar.example/cb")
    return cache


def _params(dep: Deployment, row: Row, client: OAuthClient) -> dict[str, str]:
    cred_id = dep.creds["p256"].id
    text = row.details if isinstance(row.details, str) else json.dumps(row.details)
    extra = {k: v.replace("CRED", cred_id) for k, v in row.params.items()}
    _, challenge = pkce()
    return auth_params(client, challenge, authorization_details=text.replace('"CRED"', json.dumps(cred_id)),
                       **extra)


@pytest.mark.parametrize("row", ROWS, ids=lambda r: r.name)
async def test_refused_authorization_details(http: aiohttp.ClientSession, dep: Deployment, row: Row) -> None:
    client = _clients(dep)[row.client]
    params = _params(dep, row, client)
    status, body = await token_request(http, dep, client, params, endpoint="pushed_authorize")
    assert (status, body) == (400, {"error": row.error, "error_description": row.description})
    async with http.get(f"{dep.base}/csc/v2/oauth2/authorize", params=params, allow_redirects=False) as resp:
        assert resp.status == 303, await resp.text()
        location = resp.headers["Location"]
    assert location.startswith(client.redirect_uri + "?")
    assert query_of(location) == {"error": row.error, "error_description": row.description,
                                  "state": params["state"]}


async def test_null_members_count_as_absent_and_unknown_members_are_ignored(http: aiohttp.ClientSession,
                                                                           dep: Deployment) -> None:
    """The EUDI clients send absent optionals as null; RFC 9396 §2 lets an entry carry more members."""
    client = _clients(dep)["all"]
    details = _cred(credentialID=dep.creds["p256"].id, signatureQualifier=None, acr_values=None,
                    signed_props=None, locations=["https://elsewhere.example"], extension={"x": 1})
    details[0]["documentDigests"][0]["hashType"] = None
    _, challenge = pkce()
    params = auth_params(client, challenge, authorization_details=json.dumps(details))
    status, body = await token_request(http, dep, client, params, endpoint="pushed_authorize")
    assert status == 201, body


# ---------------------------------------------------------------------------- with the signer


async def test_a_credential_the_signer_does_not_hold_is_refused_after_login(dep: Deployment) -> None:
    """bob's credential in alice's authorization: refused at the consent step, as an unknown one."""
    client = _clients(dep)["all"]
    _, challenge = pkce()
    for cred_id in (dep.creds["bob"].id, "no-such-credential"):
        params = auth_params(client, challenge, authorization_details=json.dumps(_cred(credentialID=cred_id)))
        query = await approve(dep, params, "alice")
        assert query == {"error": "invalid_request", "error_description": "Invalid parameter credentialID",
                         "state": params["state"]}


async def _code(dep: Deployment, details: list[dict[str, Any]]) -> tuple[OAuthClient, str, str]:
    client, cred = _clients(dep)["all"], dep.creds["p256"]
    verifier, challenge = pkce()
    query = await approve(dep, auth_params(client, challenge, authorization_details=json.dumps(details)), "alice",
                          pin=cred.pin)
    assert "code" in query, query
    return client, verifier, query["code"]


async def test_the_token_request_must_repeat_what_was_authorized(http: aiohttp.ClientSession,
                                                                 dep: Deployment) -> None:
    """RFC 9396 §6.1: authorization_details at the token endpoint must be what the signer approved."""
    cred = dep.creds["p256"]
    authorized = _cred(credentialID=cred.id, numSignatures=2,
                       documentDigests=[{"hash": b64(D1), "label": "A", "hashType": "sdr"}, {"hash": b64(D2)}])
    other_digest = _cred(credentialID=cred.id, numSignatures=2,
                         documentDigests=[{"hash": b64(D1), "label": "A"}, {"hash": b64(digest(b"x"))}])
    refused = [
        json.dumps(_cred(credentialID=dep.creds["p384"].id, numSignatures=2,
                         documentDigests=authorized[0]["documentDigests"])),
        json.dumps(other_digest),
        json.dumps(authorized)[:-1],  # not JSON
        json.dumps(authorized).replace('"label": "A"', '"label": "A", "label": "A"'),  # a duplicated member
    ]
    for details in refused:
        client, verifier, code = await _code(dep, authorized)
        status, body = await exchange(http, dep, client, code, verifier, authorization_details=details)
        assert (status, body) == (400, {"error": "invalid_grant", "error_description":
                                        "authorization_details do not match the authorization request"}), details
    # the same meaning in other spelling: base64url digests, another hashType case, nulls for absent
    same = _cred(credentialID=cred.id, numSignatures=2, signatureQualifier=None, documentDigests=[
        {"hash": base64.urlsafe_b64encode(D1).decode().rstrip("="), "label": "A", "hashType": "SDR"},
        {"hash": b64(D2), "label": None}])
    client, verifier, code = await _code(dep, authorized)
    status, body = await exchange(http, dep, client, code, verifier, authorization_details=json.dumps(same))
    assert status == 200, body
    assert body["authorization_details"][0]["credentialID"] == cred.id


async def test_a_code_without_authorization_details_refuses_them_at_the_token_endpoint(
        http: aiohttp.ClientSession, dep: Deployment) -> None:
    client, cred = _clients(dep)["all"], dep.creds["p256"]
    verifier, challenge = pkce()
    params = auth_params(client, challenge, scope="credential", credentialID=cred.id, numSignatures="1")
    query = await approve(dep, params, "alice", pin=cred.pin)
    status, body = await exchange(http, dep, client, query["code"], verifier,
                                  authorization_details=json.dumps(_cred(credentialID=cred.id)))
    assert (status, body) == (400, {"error": "invalid_grant", "error_description":
                                    "authorization_details do not match the authorization request"})
