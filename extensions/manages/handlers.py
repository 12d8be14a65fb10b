"""HTTP handlers of ``manages/*``: parse and validate the body, then call :mod:`lifecycle`.

Every call is audited: changes write their record in their own transaction (lifecycle); a
refused call gets a ``refused`` record here with the error text (never a secret).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import wraps

from aiohttp import web

from extensions.manages import lifecycle
from extensions.manages.clients import issue_manage_token
from extensions.manages.lifecycle import Caller, KeyRequest
from rssp.algorithms import CURVE_OIDS, EC_PUBLIC_KEY, RSA_ENCRYPTION
from rssp.api.auth import basic_credentials
from rssp.api.call import Call
from rssp.api.registry import MethodHandler
from rssp.audit import record, typed_name_actor
from rssp.auth.password_login import LoginThrottled
from rssp.ca.registry import CAPolicy, verify_manage_client
from rssp.errors import CSCError, invalid_param, try_later, wrong_scope
from rssp.hsm.types import KeySpec

POLICIES = "manages.policies"  # Services.extras key: caID -> CAPolicy, built at start-up
_LOGIN_FAILED = CSCError(400, "authentication_error", "An error occurred during authentication process")
_RSA_LENGTHS = (2048, 3072, 4096)
_CURVES = {oid: name for name, oid in CURVE_OIDS.items()}


def audited(action: str) -> Callable[[MethodHandler], MethodHandler]:
    """Write a ``refused`` audit record for a call that fails with a CSC error."""

    def decorate(handler: MethodHandler) -> MethodHandler:
        @wraps(handler)
        async def wrapper(call: Call) -> web.StreamResponse:
            try:
                return await handler(call)
            except CSCError as exc:
                target = call.body.data.get("credentialID")
                async with call.services.store.write() as conn:
                    await record(conn, actor=f"ca:{call.user.user_id}", action=f"manages.{action}",
                                 target=target[:128] if isinstance(target, str) else None, outcome="refused",
                                 client_ip=call.ip, detail={"error": exc.description})
                raise

        return wrapper

    return decorate


def _caller(call: Call) -> Caller:
    """The acting CA; every method checks it is still configured (see :func:`_policy`)."""
    _policy(call)
    return Caller(call.user.user_id, call.ip)


def _policy(call: Call) -> CAPolicy:
    policy = call.services.extras[POLICIES].get(call.user.user_id)
    if policy is None:  # the CA was removed from rssp.toml: its tokens no longer work
        raise wrong_scope()
    return policy


async def login(call: Call) -> web.Response:
    header = call.request.headers.get("Authorization")
    if header is None:
        raise CSCError(401, "invalid_request", "Malformed authentication parameter.")
    client_id, secret = basic_credentials(header)
    services = call.services
    try:
        ca_id = await services.logins.guarded(
            "client", client_id, call.ip, lambda: verify_manage_client(services.store, client_id[:64], secret))
    except LoginThrottled as throttled:  # LoginBusy included; the throttle counted the failures already
        raise try_later(throttled.description, throttled.retry_after) from None
    if ca_id is None or ca_id not in services.config.cas:
        async with services.store.write() as conn:
            await record(conn, actor=await typed_name_actor(services.config.directory, client_id),
                         action="manages.login", outcome="failed", client_ip=call.ip)
        raise _LOGIN_FAILED
    ttl = services.config.security.access_token_ttl_seconds
    async with services.store.write() as conn:
        token = await issue_manage_token(services, conn, ca_id, client_id, ttl)
        await record(conn, actor=f"ca:{ca_id}", action="manages.login", outcome="ok", client_ip=call.ip,
                     detail={"clientID": client_id})
    return web.json_response({"access_token": token, "expires_in": ttl})


def _request_id(call: Call) -> str | None:
    value = call.body.string("requestID", max_len=128)
    if value is not None and not value.strip():
        raise invalid_param("requestID")
    return value


def _key_spec(call: Call) -> tuple[str, KeySpec]:
    body = call.body
    algo = body.required_string("keyAlgo", max_len=64)
    if algo == RSA_ENCRYPTION:
        length = body.integer("keyLen", required=True)
        if length not in _RSA_LENGTHS:
            raise invalid_param("keyLen")
        name = f"rsa-{length}"
    elif algo == EC_PUBLIC_KEY:
        curve = body.required_string("curve", max_len=64)
        if curve not in _CURVES:
            raise invalid_param("curve")
        name = "ec-" + _CURVES[curve].replace("-", "").lower()
    else:
        raise invalid_param("keyAlgo")
    return name, KeySpec.parse(name)


@audited("generateKey")
async def generate_key(call: Call) -> web.Response:
    body = call.body
    policy = _policy(call)
    user = body.required_string("userID", max_len=128)
    name, spec = _key_spec(call)
    level = body.integer("level", required=True)
    multisign = body.integer("multisign", default=1)
    if not 1 <= multisign <= 1000:
        raise invalid_param("multisign")
    req = KeyRequest(user=user, spec_name=name, spec=spec, level=level, multisign=multisign,
                     description=body.string("description", max_len=255),
                     signature_qualifier=body.string("signatureQualifier", max_len=64))
    request_id = _request_id(call)
    return web.json_response(await lifecycle.generate_key(call.services, _caller(call), policy, req, request_id))


@audited("linkEid")
async def link_eid(call: Call) -> web.Response:
    body = call.body
    credential_id = body.required_string("credentialID", max_len=128)
    entries = body.object_list("eids")
    if not entries:
        raise invalid_param("eids")
    eids = lifecycle.parse_eids(entries, body.string("expression", max_len=255))
    return web.json_response(await lifecycle.link_eid(call.services, _caller(call), credential_id, eids))


@audited("authorize")
async def authorize(call: Call) -> web.Response:
    body = call.body
    credential_id = body.required_string("credentialID", max_len=128)
    subject_dn = body.required_string("subjectDN", max_len=1024)
    return web.json_response(await lifecycle.authorize(call.services, _caller(call), credential_id, subject_dn))


@audited("linkCert")
async def link_cert(call: Call) -> web.Response:
    body = call.body
    policy = _policy(call)
    credential_id = body.required_string("credentialID", max_len=128)
    certificates = body.string_list("certificates", required=True, max_items=10)
    if not certificates:
        raise invalid_param("certificates")
    return web.json_response(await lifecycle.link_cert(call.services, _caller(call), policy, credential_id,
                                                       certificates))


@audited("deleteKey")
async def delete_key(call: Call) -> web.Response:
    body = call.body
    credential_id = body.required_string("credentialID", max_len=128)
    reason = body.string("reason", max_len=255)
    request_id = _request_id(call)
    return web.json_response(await lifecycle.delete_key(call.services, _caller(call), credential_id, reason,
                                                        request_id))
