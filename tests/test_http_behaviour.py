"""HTTP behaviour found by fuzzing (issue #16; docs/api.md "HTTP behaviour"), against the running
server on SQLite and PostgreSQL:

- a CSC method the server does not offer is ``501 not_implemented`` (CSC OpenAPI), any other
  unknown path a 404;
- a JSON member named twice, at any depth, is ``400 invalid_request``;
- one parameter under two of its names (``hash`` and ``hashes``, a snake_case alias and its
  camelCase name, a v1 ``PIN`` beside ``authData``) is ``400 invalid_request`` naming both;
- every 401 carries ``WWW-Authenticate`` (RFC 9110 §11.6.1; RFC 6750 §3 for Bearer tokens);
- the consent page lists each digest of the grant with its label, never fewer.
"""

from __future__ import annotations

import json
import secrets

import aiohttp
import pytest

from client import ECDSA_SHA256, SHA256, b64, digest
from lifecycle_helpers import lifecycle_client
from oauth_helpers import FormBrowser, auth_params, pkce, token_request

from rssp.oauth.request import CredentialGrant

BEARER_REFUSED = 'Bearer error="invalid_token", error_description='
BASIC = 'Basic realm="rssp", charset="UTF-8"'


async def _post(http, dep, path: str, *, data: bytes = b"{}", headers: dict[str, str] | None = None,
                verb: str = "POST") -> tuple[int, dict[str, str], object]:
    hdrs = {"Content-Type": "application/json", **(headers or {})}
    async with http.request(verb, f"{dep.base}{path}", data=data, headers=hdrs) as resp:
        return resp.status, dict(resp.headers), await resp.json(content_type=None)


# ---------------------------------------------------------------------------- 501 for methods not offered

@pytest.mark.parametrize("path", ["/csc/v2/credentials/nosuch", "/csc/v1/credentials/nosuch", "/csc/v2/nope",
                                  "/csc/v2/signatures/signHash/x", "/csc/v2/SIGNATURES/SIGNHASH",
                                  "/csc/v2/oauth2/introspect", "/csc/v1/signatures/nope"])
async def test_a_csc_method_not_offered_is_501(http, dep, path):
    status, _, body = await _post(http, dep, path)
    assert (status, body) == (501, {"error": "not_implemented", "error_description": "Method not implemented"})
    status, _, body = await _post(http, dep, path, verb="GET")
    assert status == 501 and body["error"] == "not_implemented"


@pytest.mark.parametrize("path", ["/csc/v3/info", "/csc/info", "/nope", "/csc/v2/"])
async def test_other_unknown_paths_stay_404(http, dep, path):
    status, _, body = await _post(http, dep, path)
    assert (status, body) == (404, {"error": "invalid_request", "error_description": "Unknown method"})


async def test_offered_methods_are_not_501(csc):
    status, info = await csc.call("info", {})
    assert status == 200
    for method in info["methods"]:
        status, _ = await csc.call(method, {})
        assert status != 501, method


# ---------------------------------------------------------------------------- duplicated JSON members

async def test_duplicated_members_are_refused_at_any_depth(csc, dep):
    token, cred = await csc.token(), dep.creds["p256"]
    d1, d2 = digest(b"duplicate 1"), digest(b"duplicate 2")
    sad = await csc.sad(token, cred, num=1, hashes=[d1])
    head = f'"credentialID": "{cred.id}", "SAD": "{sad}", "signAlgo": "{ECDSA_SHA256}"'
    cases = {
        f'{{{head}, "hashes": ["{b64(d1)}"], "hashes": ["{b64(d2)}"], "hashAlgorithmOID": "{SHA256}"}}': "hashes",
        f'{{{head}, "hashes": ["{b64(d1)}"], "hashAlgorithmOID": "{SHA256}", "SAD": "{sad}"}}': "SAD",
        f'{{{head}, "hashes": ["{b64(d1)}"], "hashAlgorithmOID": "{SHA256}", "x": [{{"a": 1, "a": 1}}]}}': "a",
    }
    for raw, name in cases.items():
        status, err = await csc.call("signatures/signHash", token=token, raw=raw.encode())
        assert (status, err) == (400, {"error": "invalid_request",
                                       "error_description": f"Duplicated JSON member {name}"}), raw
    # authData entries, one object down: the PIN sent twice with two values
    status, err = await csc.call("credentials/authorize", token=token, raw=json.dumps(
        {"credentialID": cred.id, "numSignatures": 1}).encode()[:-1]
        + f', "authData": [{{"id": "PIN", "value": "{cred.pin}", "value": "wrong"}}]}}'.encode())
    assert (status, err["error_description"]) == (400, "Duplicated JSON member value"), err
    status, err = await csc.call("info", raw=b'{"lang": "en", "lang": "fr"}')
    assert (status, err["error_description"]) == (400, "Duplicated JSON member lang"), err
    status, out = await csc.sign(token, cred, sad, [d1], ECDSA_SHA256)  # the refusals spent nothing
    assert status == 200 and len(out["signatures"]) == 1, out


async def test_duplicated_member_in_authorization_details_is_refused(http, dep):
    client, cred = lifecycle_client(dep), dep.creds["p256"]
    d = digest(b"rar duplicate")
    details = (f'[{{"type": "credential", "credentialID": "{cred.id}", "numSignatures": 1, '
               f'"hashAlgorithmOID": "{SHA256}", "documentDigests": [{{"hash": "{b64(d)}", "label": "A", '
               f'"label": "B"}}]}}]')
    _, challenge = pkce()
    status, err = await token_request(http, dep, client, auth_params(client, challenge, authorization_details=details),
                                      endpoint="pushed_authorize")
    assert (status, err) == (400, {"error": "invalid_request",
                                   "error_description": "Invalid parameter authorization_details: duplicated member"})


# ---------------------------------------------------------------------------- one parameter, two names

async def test_a_parameter_under_two_names_is_refused(csc, dep):
    token, cred = await csc.token(), dep.creds["p256"]
    d = digest(b"two names")
    sad = await csc.sad(token, cred, num=1, hashes=[d])
    base = {"credentialID": cred.id, "SAD": sad, "hashes": [b64(d)], "hashAlgorithmOID": SHA256,
            "signAlgo": ECDSA_SHA256}
    cases = [  # equal values too: neither name may silently win
        ({"hash": [b64(d)]}, "Both hash and hashes parameters passed"),
        ({"hashAlgo": SHA256}, "Both hashAlgo and hashAlgorithmOID parameters passed"),
        ({"sign_algo": ECDSA_SHA256}, "Both sign_algo and signAlgo parameters passed"),
        ({"credential_id": cred.id}, "Both credential_id and credentialID parameters passed"),
        ({"hashAlgorithmOID": None, "hashAlgo": SHA256, "hash_algorithm_oid": SHA256},
         "Both hashAlgo and hash_algorithm_oid parameters passed"),
    ]
    for change, description in cases:
        status, err = await csc.call("signatures/signHash", {**base, **change}, token)
        assert (status, err) == (400, {"error": "invalid_request", "error_description": description}), change
    async with csc.session.post(f"{dep.base}/csc/v1/signatures/signHash", json={**base, "hash": base["hashes"]},
                                headers={"Authorization": f"Bearer {token}"}) as resp:  # the v1 path maps the same
        err = await resp.json()
        assert (resp.status, err["error_description"]) == (400, "Both hash and hashes parameters passed"), err
    status, err = await csc.call("credentials/authorize", {
        "credentialID": cred.id, "numSignatures": 1, "PIN": cred.pin,
        "authData": [{"id": "PIN", "value": cred.pin}]}, token)
    assert (status, err["error_description"]) == (400, "Both PIN and authData parameters passed"), err
    status, err = await csc.call("signatures/signDoc", {
        "credentialID": cred.id, "SAD": sad, "returnValidationInfo": False, "returnValidationInformation": True,
        "documentDigests": [{"hashes": [b64(d)], "hashAlgorithmOID": SHA256, "signature_format": "C",
                             "conformance_level": "Ades-B-B", "signAlgo": ECDSA_SHA256}]}, token)
    assert (status, err["error_description"]) == (400, "Both returnValidationInformation and returnValidationInfo "
                                                       "parameters passed"), err
    status, out = await csc.call("signatures/signHash", base, token)  # one name each: signs; nothing was spent
    assert status == 200 and len(out["signatures"]) == 1, out


async def test_oauth_hash_and_hashes_together_are_refused(http, dep):
    client, cred = lifecycle_client(dep), dep.creds["p256"]
    d = b64(digest(b"oauth two names"))
    _, challenge = pkce()
    params = auth_params(client, challenge, scope="credential", credentialID=cred.id, numSignatures="1",
                         hashes=d, hash=d, hashAlgorithmOID=SHA256)
    status, err = await token_request(http, dep, client, params, endpoint="pushed_authorize")
    assert (status, err) == (400, {"error": "invalid_request",
                                   "error_description": "Both hash and hashes parameters passed"})


# ---------------------------------------------------------------------------- WWW-Authenticate on 401

async def test_every_401_names_its_authentication_scheme(http, dep, csc):
    token = await csc.token()
    revoked = await csc.token()
    status, _ = await csc.call("auth/revoke", {"token": revoked}, revoked)
    assert status == 204
    cred = dep.creds["p256"]
    sign = json.dumps({"credentialID": cred.id, "SAD": "x", "hashes": [b64(digest(b"401"))],
                       "hashAlgorithmOID": SHA256, "signAlgo": ECDSA_SHA256}).encode()
    cases = [  # (path, body, Authorization, status/error expected, challenge expected)
        ("/csc/v2/credentials/list", b"{}", None, (401, "invalid_token"), "Bearer"),
        ("/csc/v2/credentials/list", b"{}", "Bearer not.a.token", (401, "invalid_token"),
         BEARER_REFUSED + '"Invalid access token"'),
        ("/csc/v2/signatures/signHash", sign, "Bearer not.a.token", (401, "invalid_token"),  # the one-hop path
         BEARER_REFUSED + '"Invalid access token"'),
        ("/csc/v1/signatures/signHash", sign, None, (401, "invalid_token"), "Bearer"),
        ("/csc/v2/credentials/list", b"{}", f"Bearer {revoked}", (401, "expired_token"),
         BEARER_REFUSED + '"The access token is expired or revoked"'),
        ("/csc/v2/auth/login", b"{}", None, (401, "invalid_request"), BASIC),
        ("/csc/v2/auth/login", b"{}", f"Bearer {token}", (401, "invalid_request"), BASIC),
    ]
    for path, data, authorization, expected, challenge in cases:
        status, headers, body = await _post(http, dep, path, data=data,
                                            headers={"Authorization": authorization} if authorization else None)
        assert (status, body["error"]) == expected, (path, authorization, body)
        assert headers.get("WWW-Authenticate") == challenge, (path, authorization, headers)
    status, headers, _ = await _post(http, dep, "/csc/v2/credentials/list",
                                     headers={"Authorization": f"Bearer {token}"})
    assert status == 200 and "WWW-Authenticate" not in headers


async def test_oauth_client_authentication_401_names_basic(http, dep):
    client = lifecycle_client(dep)
    wrong = aiohttp.encode_basic_auth(client.client_id, "not the secret")
    for endpoint in ("token", "pushed_authorize", "revoke"):
        async with http.post(f"{dep.base}/csc/v2/oauth2/{endpoint}", headers={"Authorization": wrong},
                             data={"grant_type": "client_credentials", "token": "x"}) as resp:
            body = await resp.json()
            assert (resp.status, body["error"]) == (401, "invalid_client"), (endpoint, body)
            assert resp.headers.get("WWW-Authenticate") == BASIC, endpoint


# ---------------------------------------------------------------------------- one label per digest

async def test_consent_page_lists_every_document(dep):
    client, cred = lifecycle_client(dep), dep.creds["p256"]
    digests = [digest(f"consent {i} {secrets.token_hex(4)}".encode()) for i in range(3)]
    details = [{"type": "credential", "credentialID": cred.id, "numSignatures": 3, "hashAlgorithmOID": SHA256,
                "documentDigests": [{"hash": b64(digests[0]), "label": "only this one is labelled"},
                                    {"hash": b64(digests[1])}, {"hash": b64(digests[2])}]}]
    _, challenge = pkce()
    async with FormBrowser(dep) as browser:
        page = await browser.authorize(auth_params(client, challenge, authorization_details=json.dumps(details)))
        assert page.status == 200, page.text
        page = await browser.login()
        assert page.status == 200, page.text
    table = page.text.split('<table id="documents">', 1)[1].split("</table>", 1)[0]
    assert table.count("<tr>") == 1 + len(digests), table  # a header row, then one row per digest
    assert all(b64(d) in table for d in digests) and "only this one is labelled" in table


def test_a_grant_holds_one_label_per_digest():
    with pytest.raises(ValueError, match="one label"):
        CredentialGrant("cred", None, 2, SHA256, ("aGFzaDE=", "aGFzaDI="), ("only one",))
    CredentialGrant("cred", None, 2, SHA256, ("aGFzaDE=", "aGFzaDI="), ("one", None))
