"""``signatures/signHash``: raw signature values over digests the client computed."""

from __future__ import annotations

from functools import partial

from aiohttp import web

from rssp.api.credentials import own_credential, parse_digests
from rssp.api.middleware import client_ip
from rssp.api.parse import Body, decode_b64, encode_b64
from rssp.api.polling import accepted, async_request
from rssp.api import schemas
from rssp.api.bearer import bearer_token
from rssp.api.body import method_body
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.errors import CSCError, missing_param, unknown_credential
from rssp.jobs.sign_hash import new_job
from rssp.jobs.store import insert_job
from rssp.sam.signing import SignRequest
from rssp.services import Services

SCOPES = _SCOPES = frozenset({"service", "credential"})
_Fields = tuple[tuple[bytes, ...], str, str | None, bytes | None]  # digests, signAlgo, hash OID, params


async def sign_hash(call: Call) -> web.Response:
    sad = _sad_or_credential_token(call)
    fields = _signing_fields(call.body, call.services)
    mode = async_request(call.body, call.services)
    cred = await own_credential(call, enabled=True, key_only=True)
    req = SignRequest(cred, call.user.user_id, sad, *fields, call.ip)
    if mode is not None:  # operationMode "A": spend now, sign in a job (rssp.jobs.sign_hash)
        job = new_job(req, call.user.client_id, mode.validity_ms, mode.response_uri)
        await call.services.signing.spend(req, partial(insert_job, job))
        return accepted(call.services, job)
    return _response(await call.services.signing.sign_hashes(req))


async def sign_hash_in_one_hop(request: web.Request, services: Services) -> web.Response | None:
    """signHash with the token checked inside the SAD spend's transaction: one database hop.

    Why: single-hash signHash is bound by per-request work, and the token lookup was a hop of
    its own. Only a request that will go through is served here: one without a SAD field,
    malformed, for a credential not in the signing-key cache, or refused at the spend (a bad
    token included) gets None with nothing spent or recorded, and :func:`sign_hash` then
    serves it from the start, raising and auditing in its usual order.
    """
    try:
        token = bearer_token(request)
        body = await method_body(request, METHOD)
        sad = body.string("SAD", max_len=256)
        fields = _signing_fields(body, services)
        if body.choice("operationMode", ("S", "A"), "S") != "S":
            return None
        cred = services.signing_keys.cached(body.required_string("credentialID", max_len=128))
    except CSCError:
        return None
    if sad is None or cred is None:
        return None
    request_ = SignRequest(cred, cred.user_id, sad, *fields, client_ip(request))
    signatures = await services.signing.sign_in_one_hop(token, _SCOPES, request_)
    return None if signatures is None else _response(signatures)


def _signing_fields(body: Body, services: Services) -> _Fields:
    digests = parse_digests(body, required=True, max_items=services.config.security.max_hashes_per_request)
    sign_algo = body.required_string("signAlgo", max_len=64)
    hash_oid = body.string("hashAlgorithmOID", max_len=64)
    params_b64 = body.string("signAlgoParams", max_len=4096)
    params = decode_b64(params_b64, error="Invalid parameter signAlgoParams") if params_b64 else None
    return digests, sign_algo, hash_oid, params


def _response(signatures: list[bytes]) -> web.Response:
    return web.json_response({"signatures": [encode_b64(s) for s in signatures]})


def _sad_or_credential_token(call: Call) -> str:
    """The SAD; with a credential-scoped OAuth token (CSC v2) the token is its own SAD.

    Such a token signs only with the credential it was issued for; its grant (count, hashes)
    is spent like a SAD's (:func:`rssp.sam.sad.insert_token_sad`). A service token never
    authorizes signing by itself.
    """
    return sad_or_credential_token(call, call.body.required_string("credentialID", max_len=128)
                                   if call.user.scope == "credential" else None)


def sad_or_credential_token(call: Call, credential_id: str | None) -> str:
    """:func:`_sad_or_credential_token` for ``credential_id`` (signDoc may name it by qualifier)."""
    sad = call.body.string("SAD", max_len=256)
    if call.user.scope == "credential":
        if credential_id != call.user.credential_id:
            raise unknown_credential()
        return sad or bearer_token(call.request)
    if sad is None:
        raise missing_param("string", "SAD")
    return sad


METHOD = Method("signatures/signHash", sign_hash, scopes=_SCOPES, fast_path=sign_hash_in_one_hop,
                doc=schemas.SIGN_HASH)


def register(registry: Registry) -> None:
    registry.add(METHOD)
