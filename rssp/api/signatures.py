"""``signatures/signHash``: raw signature values over digests the client computed."""

from __future__ import annotations

from aiohttp import web

from rssp.api.credentials import own_credential, parse_digests
from rssp.api.parse import decode_b64, encode_b64
from rssp.api.registry import Call, Method, Registry, bearer_token
from rssp.errors import invalid_param, missing_param, unknown_credential
from rssp.sam.signing import SignRequest


async def sign_hash(call: Call) -> web.Response:
    body, services = call.body, call.services
    sad = _sad_or_credential_token(call)
    digests = parse_digests(body, required=True, max_items=services.config.security.max_hashes_per_request)
    sign_algo = body.required_string("signAlgo", max_len=64)
    hash_oid = body.string("hashAlgorithmOID", max_len=64)
    params_b64 = body.string("signAlgoParams", max_len=4096)
    params = decode_b64(params_b64, error="Invalid parameter signAlgoParams") if params_b64 else None
    if body.choice("operationMode", ("S", "A"), "S") != "S":
        raise invalid_param("operationMode")  # asynchronous mode is not offered (info says so)
    cred = await own_credential(call, enabled=True, key_only=True)
    signatures = await services.signing.sign_hashes(
        SignRequest(cred, call.user.user_id, sad, digests, sign_algo, hash_oid, params, call.ip)
    )
    return web.json_response({"signatures": [encode_b64(s) for s in signatures]})


def _sad_or_credential_token(call: Call) -> str:
    """The SAD; with a credential-scoped OAuth token (CSC v2) the token is its own SAD.

    Such a token signs only with the credential it was issued for; its grant (count, hashes)
    is spent like a SAD's (:func:`rssp.sam.sad.insert_token_sad`). A service token never
    authorizes signing by itself.
    """
    sad = call.body.string("SAD", max_len=256)
    if call.user.scope == "credential":
        if call.body.required_string("credentialID", max_len=128) != call.user.credential_id:
            raise unknown_credential()
        return sad or bearer_token(call.request)
    if sad is None:
        raise missing_param("string", "SAD")
    return sad


def register(registry: Registry) -> None:
    registry.add(Method("signatures/signHash", sign_hash, scopes=frozenset({"service", "credential"})))
