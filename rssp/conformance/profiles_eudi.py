"""The CSC v2.2 profiles: the EUDI wallet libraries (Kotlin, Swift) and the EUDI relying-party client.

- **EUDI Kotlin** (``eudi-lib-jvm-rqes-csc-kt`` 0.8, v2.2 since 0aedbe1): ``info`` (its parser
  requires ``supportedHashTypes`` and ``conformance_levels``), RFC 8414 discovery from
  ``oauth2Issuer``, PAR when advertised with ``prompt=login``; ``scope=service``;
  ``credentials/list`` and ``info`` with every flag (``certificates: chain``, ``onlyValid``);
  credential authorization by RAR of type ``https://cloudsignatureconsortium.org/2025/credential``
  with ``numSignatures`` and ``documentDigests[{hash, label, hashType: "SDR"}]``, the same
  ``authorization_details`` in the token request; ``signatures/signHash`` with the credential
  token as Bearer, no ``SAD``, ``signAlgoParams: null``, ``operationMode: "S"``. Time-stamps
  come from an RFC 3161 TSA of its own.
- **EUDI Swift** (``eudi-lib-ios-rqes-csc-swift``): the same calls, but the RAR is of type
  ``credential`` with ``locations: []``, digests in unpadded base64url to the authorization
  endpoint and in standard Base64 to the token endpoint (``DocumentDigest.forAuthorization`` /
  ``forToken``), and ``SignHashRequest`` coding keys in snake_case (``credential_id``,
  ``hash_algorithm_oid``, ``sign_algo``, ``operation_mode``, ``client_data``).
- **EUDI relying party** (the R3 QTSP's Python RP client, CSC v2.2): OAuth by RAR of type
  ``…/2025/credential-creation`` with ``credentialCreationRequest.certificatePolicy``, then
  ``credentials/create`` (201) with ``credentialInfo``/``certificates``/``certInfo``; a service
  token to list and describe; OAuth ``…/2025/credential-deletion`` with ``credentialID``, then
  ``credentials/delete`` (204). The kit adds what a signer does in between: signing with the
  new credential (OAuth ``credential`` scope, the PIN the server gave once), and checks that a
  second ``create`` with the same token makes no second credential.
"""

from __future__ import annotations

import json
from typing import Any
from urllib.parse import parse_qs, urlsplit

from rssp.conformance import checks, common, oauth
from rssp.conformance.checks import HASH_OID
from rssp.conformance.oauth import Endpoints
from rssp.conformance.session import Run, need

RAR_URI = "https://cloudsignatureconsortium.org/2025/"
EUDI_POLICY = "0.4.0.194112.1.2"  # QCP-n-qscd, what the EUDI RP client asks for
_FLAGS = {"certificates": "chain", "certInfo": True, "authInfo": True, "lang": "en-US"}


async def _service(run: Run) -> tuple[dict[str, Any], Endpoints, str]:
    info = await run.csc("v2", "info", {"lang": "en-US"}, check=checks.info_v2_2)
    ep = await oauth.discover(run, info)
    service = await common.oauth_token(run, ep, {"scope": "service", "prompt": "login"}, common.signer(run),
                                       par=True)
    return info, ep, service["access_token"]


async def _described(run: Run, token: str) -> common.Credential:
    cred_id = await common.choose(run, "v2", token, {"credentialInfo": True, "onlyValid": True, **_FLAGS})
    return await common.describe(run, "v2", token, {"credentialID": cred_id, **_FLAGS}, checks.credential_v2)


def _rar(kind: str, cred: common.Credential, digest_value: str, *, swift: bool = False) -> list[dict[str, Any]]:
    entry: dict[str, Any] = {"type": "credential" if swift else f"{RAR_URI}credential", "credentialID": cred.id,
                             "documentDigests": [{"hash": digest_value, "label": f"kit document ({kind})"}],
                             "hashAlgorithmOID": HASH_OID["sha256"]}
    if swift:
        entry["locations"] = []
    else:
        entry["numSignatures"] = 1
        entry["documentDigests"][0]["hashType"] = "SDR"
    return [entry]


async def eudi_kotlin(run: Run) -> None:
    _info, ep, token = await _service(run)
    cred = await _described(run, token)
    signed = checks.digest("eudi kotlin")
    details = json.dumps(_rar("kotlin", cred, common.b64(signed)))
    granted = await common.oauth_token(run, ep, {"scope": "credential", "authorization_details": details},
                                       common.signer(run, cred), par=True,
                                       token_extra={"authorization_details": details})
    body = {"credentialID": cred.id, "hashes": [common.b64(signed)], "hashAlgorithmOID": HASH_OID["sha256"],
            "signAlgo": checks.sha256_combined(cred.algos), "signAlgoParams": None, "operationMode": "S"}
    await common.sign_hash(run, "v2", granted["access_token"], cred, body, [signed], "sha256")
    common.not_called(run, "signatures/timestamp", "the EUDI libraries time-stamp with an RFC 3161 TSA")


async def eudi_swift(run: Run) -> None:
    _info, ep, token = await _service(run)
    cred = await _described(run, token)
    signed = checks.digest("eudi swift")
    authorize = json.dumps(_rar("swift", cred, common.b64url(signed), swift=True))
    for_token = json.dumps(_rar("swift", cred, common.b64(signed), swift=True))
    granted = await common.oauth_token(run, ep, {"authorization_details": authorize}, common.signer(run, cred),
                                       par=True, token_extra={"authorization_details": for_token})
    body = {"credential_id": cred.id, "hashes": [common.b64(signed)], "hash_algorithm_oid": HASH_OID["sha256"],
            "sign_algo": checks.sha256_combined(cred.algos), "operation_mode": "S",
            "client_data": "rssp conformance kit (Swift profile)"}
    await common.sign_hash(run, "v2", granted["access_token"], cred, body, [signed], "sha256")
    common.not_called(run, "signatures/timestamp", "the EUDI libraries time-stamp with an RFC 3161 TSA")


async def eudi_rp_lifecycle(run: Run) -> None:
    info = await run.csc("v2", "info", {}, check=checks.info_v2_2)
    for method in ("credentials/create", "credentials/delete"):
        need_method(run, info, method)
    ep = await oauth.discover(run, info)
    policy = run.target.certificate_policy or EUDI_POLICY
    creation = json.dumps([{"type": f"{RAR_URI}credential-creation",
                            "credentialCreationRequest": {"certificatePolicy": policy}}])
    granted = await common.oauth_token(run, ep, {"authorization_details": creation}, common.signer(run))
    body = {"credentialCreationRequest": {"certificatePolicy": policy}, "credentialInfo": True,
            "certificates": "single", "certInfo": True}
    made = await run.csc("v2", "credentials/create", body, granted["access_token"], expect=201, check=_created)
    again = await run.csc("v2", "credentials/create", body, granted["access_token"], expect=201, check=_created,
                          note="the same token again: the same credential")
    if again["credentialID"] != made["credentialID"]:
        raise run.fail("credentials/create", "a replayed create made a second credential")
    service = await common.oauth_token(run, ep, {"scope": "service"}, common.signer(run))
    token = service["access_token"]
    await run.csc("v2", "credentials/list", {"credentialInfo": True, "certificates": "single", "certInfo": True},
                  token, check=checks.listed(made["credentialID"]))
    cred = await common.describe(run, "v2", token, {"credentialID": made["credentialID"], "certificates": "chain",
                                                    "certInfo": True}, checks.credential_v2)
    pin, seed = made.get("PIN"), _seed(made.get("otpauthURI"))
    await _sign_with_new(run, ep, cred, pin, seed)
    deletion = json.dumps([{"type": f"{RAR_URI}credential-deletion", "credentialID": cred.id}])
    granted = await common.oauth_token(run, ep, {"authorization_details": deletion},
                                       common.signer(run, cred, pin=pin, seed=seed))
    await run.csc("v2", "credentials/delete", {"credentialID": cred.id}, granted["access_token"], expect=204)
    await run.csc("v2", "credentials/list", {}, token, check=_gone(cred.id), note="the credential is gone")


async def _sign_with_new(run: Run, ep: Endpoints, cred: common.Credential, pin: str | None, seed: str | None) -> None:
    if pin is None:
        common.not_called(run, "signatures/signHash", "the server gave no PIN for the new credential")
        return
    signed = checks.digest("new credential")
    details = json.dumps(_rar("new credential", cred, common.b64url(signed)))
    granted = await common.oauth_token(run, ep, {"authorization_details": details},
                                       common.signer(run, cred, pin=pin, seed=seed))
    body = {"credentialID": cred.id, "hashes": [common.b64(signed)], "hashAlgorithmOID": HASH_OID["sha256"],
            "signAlgo": checks.sha256_combined(cred.algos)}
    await common.sign_hash(run, "v2", granted["access_token"], cred, body, [signed], "sha256")


def need_method(run: Run, info: dict[str, Any], method: str) -> None:
    if method not in info.get("methods", []):
        raise run.fail("info", f"{method} is not in info.methods")


def _created(data: Any) -> None:
    need(isinstance(data, dict) and isinstance(data.get("credentialID"), str), "credentialID")


def _gone(credential_id: str) -> Any:
    def check(data: Any) -> None:
        need(credential_id not in data.get("credentialIDs", []), f"{credential_id} is still listed")

    return check


def _seed(uri: str | None) -> str | None:
    return parse_qs(urlsplit(uri).query)["secret"][0] if uri else None
