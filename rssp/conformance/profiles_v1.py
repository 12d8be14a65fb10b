"""The CSC v1 and v2.0 profiles: pyHanko, documenso, and a plain CSC v2.0 explicit-authorization client.

- **pyHanko** ``CSCSigner`` (pyHanko 0.x, ``sign/signers/csc_signer.py``; CSC v1.0.4.0): it calls
  ``credentials/info`` (``certificates: chain``, ``certInfo: false``) and ``signatures/signHash``
  (``hash``, ``hashAlgo``, ``signAlgo`` = sha256 combined OID) itself; the authorization
  manager sends ``credentials/authorize`` as ``format_csc_auth_request`` formats it (``hash``,
  ``numSignatures``, top-level ``PIN``/``OTP``, ``description``). It is given its token and its
  credential ID, so the kit's login and list are setup steps.
- **documenso** (``packages/ee/server-only/signing/csc/client/*.ts``; CSC v1.0.4.0): ``info``
  (reads ``oauth2``), OAuth ``scope=service``, ``credentials/list`` ``{}``, ``credentials/info``
  (``certificates: chain``, ``certInfo: true``; requires ``authMode``), OAuth ``scope=credential``
  with ``hash`` = base64url digests and no ``credentials/authorize``; the credential token is
  the ``SAD`` of ``signatures/signHash``, sent with the service token; the strongest algorithm
  ``key.algo`` offers; ``signatures/timestamp`` when ``info.methods`` has it; ``oauth2/revoke``.
- **CSC v2.0 explicit**: ``auth/login``, ``credentials/list`` and ``info`` with every flag,
  ``credentials/authorize`` with ``authData`` per ``auth.objects``, ``signHash`` with the bare
  key algorithm plus ``hashAlgorithmOID``, ``signatures/timestamp``, ``auth/revoke``.
"""

from __future__ import annotations

from typing import Any

from rssp.algorithms import EC_PUBLIC_KEY, RSA_ENCRYPTION
from rssp.conformance import checks, common, oauth
from rssp.conformance.checks import HASH_OID
from rssp.conformance.session import Run, need


async def pyhanko(run: Run) -> None:
    token = await common.login(run, "v1", setup=True)
    cred_id = run.target.credential_id or await common.choose(run, "v1", token, {}, setup=True)
    cred = await common.describe(run, "v1", token, {"credentialID": cred_id, "certificates": "chain",
                                                    "certInfo": False}, checks.credential_pyhanko)
    sign_algo = checks.sha256_combined(cred.algos)
    signed = checks.digest("pyhanko")
    auth: dict[str, Any] = {"credentialID": cred.id, "numSignatures": 1, "hash": [common.b64(signed)],
                            "PIN": run.target.pin}
    if cred.needs_otp:
        auth["OTP"] = run.otp_code(run.target.totp_seed)
    auth["description"] = "rssp conformance kit (pyHanko profile)"
    sad = await run.csc("v1", "credentials/authorize", auth, token, check=checks.sad)
    body = {"credentialID": cred.id, "SAD": sad["SAD"], "hashAlgo": HASH_OID["sha256"], "signAlgo": sign_algo,
            "hash": [common.b64(signed)]}
    await common.sign_hash(run, "v1", token, cred, body, [signed], "sha256")
    common.not_called(run, "signatures/timestamp", "pyHanko time-stamps with an RFC 3161 TSA of its own")


async def documenso(run: Run) -> None:
    info = await run.csc("v1", "info", {}, check=checks.info_v1)
    ep = await oauth.discover(run, info)
    service = await common.oauth_token(run, ep, {"scope": "service"}, common.signer(run))
    token = service["access_token"]
    cred_id = await common.choose(run, "v1", token, {})
    cred = await common.describe(run, "v1", token, {"credentialID": cred_id, "certificates": "chain",
                                                    "certInfo": True}, checks.credential_v1)
    sign_algo, hash_name = checks.strongest(cred.algos)
    signed = checks.digest("documenso", hash_name)
    params = {"scope": "credential", "credentialID": cred.id, "numSignatures": "1", "hash": common.b64url(signed),
              "description": "rssp conformance kit (documenso profile)"}
    granted = await common.oauth_token(run, ep, params, common.signer(run, cred))
    if granted.get("token_type") != "SAD":
        run.record("token_type", True, f"{granted.get('token_type')!r}, not 'SAD': documenso logs it and goes on")
    body = {"credentialID": cred.id, "SAD": granted["access_token"], "hash": [common.b64(signed)],
            "signAlgo": sign_algo, "hashAlgo": HASH_OID[hash_name]}
    await common.sign_hash(run, "v1", token, cred, body, [signed], hash_name)
    await common.timestamp(run, "v1", token, info["methods"])
    await oauth.revoke(run, ep, token)


def _info_v2_0(data: Any) -> None:
    need(isinstance(data, dict), "not a JSON object")
    checks.strings(data, "specs", "name", "logo", "region", "lang", "description")
    need(isinstance(data.get("methods"), list) and isinstance(data.get("authType"), list), "methods/authType")


async def csc_v2_0(run: Run) -> None:
    info = await run.csc("v2", "info", {}, check=_info_v2_0)
    token = await common.login(run, "v2")
    flags = {"certificates": "chain", "certInfo": True, "authInfo": True}
    cred_id = await common.choose(run, "v2", token, {"credentialInfo": True, **flags})
    cred = await common.describe(run, "v2", token, {"credentialID": cred_id, **flags}, checks.credential_v2)
    hash_name = "sha256"
    signed = checks.digest("csc v2.0", hash_name)
    auth_data = [{"id": "PIN", "value": run.target.pin}]
    if cred.needs_otp:
        auth_data.append({"id": "OTP", "value": run.otp_code(run.target.totp_seed)})
    authorize = {"credentialID": cred.id, "numSignatures": 1, "hashes": [common.b64(signed)],
                 "hashAlgorithmOID": HASH_OID[hash_name], "authData": auth_data}
    sad = await run.csc("v2", "credentials/authorize", authorize, token, check=checks.sad)
    bare = EC_PUBLIC_KEY if checks.key_kind(cred.algos) == "ec" else RSA_ENCRYPTION
    body = {"credentialID": cred.id, "SAD": sad["SAD"], "hashes": [common.b64(signed)],
            "hashAlgorithmOID": HASH_OID[hash_name], "signAlgo": bare}
    await common.sign_hash(run, "v2", token, cred, body, [signed], hash_name)
    await common.timestamp(run, "v2", token, info["methods"])
    await run.csc("v2", "auth/revoke", {"token": token}, token, expect=204)
