"""``credentials/suspend`` and ``credentials/resume``: the signer suspends or resumes a credential.

JT2A extension methods in CSC style (JT2A Part II 3.3.1/3.3.2). The signer is confirmed twice:
by the Bearer token (scope ``service``) and by the credential's own factors in ``authData``
(the PIN, and the OTP at level 2 and above), checked and counted toward the lockout exactly
as in ``credentials/authorize``. ``requestID`` makes the request replay-proof: it is recorded
with the change, and the same requestID again returns the first answer and changes nothing.

In: ``credentialID``, ``authData``, ``requestID`` (1-128 characters), optional ``reason``.
Out: ``credentialID``, ``key`` {``status``: ``disabled`` | ``enabled``}.
"""

from __future__ import annotations

from aiohttp import web

from rssp.api.credentials import own_credential, parse_factors
from rssp.api import schemas
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.credentials.suspension import Change, SuspensionError, apply, check_state, replayed
from rssp.errors import invalid_param, invalid_request, missing_param
from rssp.sam.factors import check_factors


async def _change(call: Call, action: str) -> web.Response:
    body, services = call.body, call.services
    request_id = body.required_string("requestID", max_len=128)
    if not request_id.strip():
        raise invalid_param("requestID")
    reason = body.string("reason", max_len=255)
    factors = parse_factors(body)
    if factors.pin is None:  # the signer confirms with the credential's factors, always
        raise missing_param("array", "authData")
    cred = await own_credential(call)
    change = Change(cred.id, action, "signer", call.user.user_id, request_id, reason, call.ip)
    try:
        first = await replayed(services.store, change)
        if first is not None:
            return web.json_response(first)
        await check_state(services.store, cred.status, change)
        await check_factors(services.store, services.hsm, cred, factors,
                            max_failures=services.config.security.max_failed_attempts,
                            actor=call.user.user_id, client_ip=call.ip)
        return web.json_response(await apply(services.store, change))
    except SuspensionError as exc:
        raise invalid_request(str(exc)) from None


async def suspend(call: Call) -> web.Response:
    return await _change(call, "suspend")


async def resume(call: Call) -> web.Response:
    return await _change(call, "resume")


def register(registry: Registry) -> None:
    registry.add(Method("credentials/suspend", suspend, doc=schemas.SUSPEND))
    registry.add(Method("credentials/resume", resume, doc=schemas.RESUME))
