"""``signatures/signHash``: raw signature values over digests the client computed."""

from __future__ import annotations

from aiohttp import web

from rssp.api.credentials import own_credential, parse_digests
from rssp.api.parse import decode_b64, encode_b64
from rssp.api.registry import Call, Method, Registry
from rssp.errors import invalid_param
from rssp.sam.signing import SignRequest


async def sign_hash(call: Call) -> web.Response:
    body, services = call.body, call.services
    sad = body.required_string("SAD", max_len=256)
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


def register(registry: Registry) -> None:
    registry.add(Method("signatures/signHash", sign_hash))
