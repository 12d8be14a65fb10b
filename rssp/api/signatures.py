"""``signatures/signHash``: raw signature values over digests the client computed.

One path. The body is parsed once, each field kept with the refusal it earned, if any. The
Bearer token is checked by the store call that spends the SAD (:class:`rssp.sam.sad.TokenCheck`),
so a request that can be spent as it stands — well-formed, with a SAD, in mode "S", for a
credential this process has cached, in an algorithm its key signs — costs one database hop
(single-hash signHash is bound by per-request work, and each hop is a large part of it). Any
other request first looks its caller up (:func:`_with_caller`) and is refused, or completed, in
the order every Bearer method follows: the token (401), then the body's fields in turn, the
credential and the algorithm; its spend checks the token again, in the same transaction.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import ParamSpec, TypeVar

from aiohttp import web

from rssp.api import schemas
from rssp.api.credentials import parse_digests
from rssp.api.parse import Body, decode_b64, encode_b64
from rssp.api.polling import AsyncRequest, accepted, async_request
from rssp.api.bearer import authenticate, bearer_token
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.auth.tokens import Principal
from rssp.errors import CSCError, invalid_request, missing_param, unknown_credential
from rssp.hsm import SignMechanism
from rssp.jobs.sign_hash import new_job
from rssp.jobs.store import insert_job
from rssp.sam.sad import TokenCheck
from rssp.sam.signing import SignRequest, SigningService
from rssp.services import Services

SCOPES = frozenset({"service", "credential"})
_Fields = tuple[tuple[bytes, ...], str, str | None, bytes | None]  # digests, signAlgo, hash OID, params
_P = ParamSpec("_P")
_T = TypeVar("_T")


async def sign_hash(call: Call) -> web.Response:
    token = call.token or bearer_token(call.request)  # the dispatcher's (token_at_spend)
    asked = _Asked.parse(call.body, call.services)
    ready = _spendable(asked, call) or await _with_caller(asked, call, token)
    req, mechanism, mode = ready
    caller = TokenCheck(token, SCOPES)
    if mode is not None:  # operationMode "A": spend now, sign in a job (rssp.jobs.sign_hash)
        job = new_job(req, call.user.client_id, mode.validity_ms, mode.response_uri)
        await call.services.signing.spend(req, mechanism, caller, partial(insert_job, job))
        return accepted(call.services, job)
    signatures = await call.services.signing.sign_hashes(req, mechanism, caller)
    return web.json_response({"signatures": [encode_b64(s) for s in signatures]})


_Ready = tuple[SignRequest, SignMechanism, AsyncRequest | None]


@dataclass(frozen=True)
class _Asked:
    """The signHash body, parsed once: each field, or the refusal it earned (raised in its turn)."""

    credential_id: str | CSCError
    sad: str | None | CSCError
    fields: _Fields | CSCError
    mode: AsyncRequest | None | CSCError

    @staticmethod
    def parse(body: Body, services: Services) -> _Asked:
        return _Asked(_attempt(body.required_string, "credentialID", max_len=128),
                      _attempt(body.string, "SAD", max_len=256),
                      _attempt(_signing_fields, body, services), _attempt(async_request, body, services))

    def in_order(self, principal: Principal, token: str) -> tuple[str, str, _Fields, AsyncRequest | None]:
        """Credential ID, SAD, fields and mode for ``principal``, or the first refusal in the
        order of the checks: a credential token's own credential and SAD, a service token's
        SAD, the hashes and algorithm, the mode, the credential ID."""
        credential_id = _ok(self.credential_id) if principal.scope == "credential" else None
        sad = sad_for(principal, credential_id, _ok(self.sad), token)
        fields, mode = _ok(self.fields), _ok(self.mode)
        return _ok(self.credential_id), sad, fields, mode


def _attempt(parse: Callable[_P, _T], *args: _P.args, **kwargs: _P.kwargs) -> _T | CSCError:
    try:
        return parse(*args, **kwargs)
    except CSCError as refused:
        return refused


def _ok(value: _T | CSCError) -> _T:
    if isinstance(value, CSCError):
        raise value
    return value


def _spendable(asked: _Asked, call: Call) -> _Ready | None:
    """The request, if it can go to its spend before its caller is known; None raises nothing.

    The caller's checks (token, scope, owner) are then the spend's
    (:func:`rssp.sam.sad.check_caller`), so ``req.user_id`` is the cached credential's owner.
    """
    credential_id, sad, fields = asked.credential_id, asked.sad, asked.fields
    if not isinstance(credential_id, str) or not isinstance(sad, str) or isinstance(fields, CSCError):
        return None
    cred = call.services.signing_keys.cached(credential_id) if asked.mode is None else None
    if cred is None:
        return None
    req = SignRequest(cred, cred.user_id, sad, *fields, call.ip)
    try:
        return req, SigningService.mechanism(req), None
    except CSCError:
        return None


async def _with_caller(asked: _Asked, call: Call, token: str) -> _Ready:
    """The request once its caller is known; the first refusal, in order, if there is one.

    Taken by a request that is refused before its spend, names a credential this process has
    not cached yet (this fills the cache), sends no SAD (a credential token is its own), or
    asks for mode "A" (its job records the OAuth client).
    """
    call.principal = principal = await authenticate(call.services, token, SCOPES)
    credential_id, sad, fields, mode = asked.in_order(principal, token)
    cred = await call.services.signing_keys.get(credential_id, principal.user_id)
    if cred is None:
        raise unknown_credential()
    if cred.status != "enabled":
        raise invalid_request("The credential identified by credentialID is disabled")
    req = SignRequest(cred, principal.user_id, sad, *fields, call.ip)
    return req, SigningService.mechanism(req), mode


def _signing_fields(body: Body, services: Services) -> _Fields:
    digests = parse_digests(body, required=True, max_items=services.config.security.max_hashes_per_request)
    sign_algo = body.required_string("signAlgo", max_len=64)
    hash_oid = body.string("hashAlgorithmOID", max_len=64)
    params_b64 = body.string("signAlgoParams", max_len=4096)
    params = decode_b64(params_b64, error="Invalid parameter signAlgoParams") if params_b64 else None
    return digests, sign_algo, hash_oid, params


def sad_for(principal: Principal, credential_id: str | None, sad: str | None, token: str) -> str:
    """The SAD; with a credential-scoped OAuth token (CSC v2) the token is its own SAD.

    Such a token signs only with the credential it was issued for; its grant (count, hashes)
    is spent like a SAD's (:func:`rssp.sam.sad.insert_token_sad`). A service token never
    authorizes signing by itself.
    """
    if principal.scope == "credential":
        if credential_id != principal.credential_id:
            raise unknown_credential()
        return sad or token
    if sad is None:
        raise missing_param("string", "SAD")
    return sad


def sad_or_credential_token(call: Call, credential_id: str | None) -> str:
    """:func:`sad_for` a request's ``SAD`` (signDoc, which may name the credential by qualifier)."""
    return sad_for(call.user, credential_id, call.body.string("SAD", max_len=256), bearer_token(call.request))


METHOD = Method("signatures/signHash", sign_hash, scopes=SCOPES, token_at_spend=True, doc=schemas.SIGN_HASH)


def register(registry: Registry) -> None:
    registry.add(METHOD)
