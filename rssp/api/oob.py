"""``credentials/getChallenge``, ``credentials/sendOTP`` (v1) and ``credentials/authorizeCheck``.

- ``getChallenge`` (``credentialID``, ``authObjectID``): for ``EMAIL_OTP`` (a ``ChallengeResponse``
  object) it e-mails a one-time code and answers 204 — the challenge went out of band. rssp
  also takes ``hashes`` + ``hashAlgorithmOID`` (and ``numSignatures``, ``description``, ``lang``
  for the e-mail's text): the code is then bound to those hashes, and at SCAL 2 only such a code
  authorizes signatures (one asked for without hashes confirms ``credentials/suspend`` / ``resume``).
- ``sendOTP`` is the v1 method: the same, answering 204; v1 ``hash`` works as ``hashes``.
- ``authorizeCheck`` (``handle``): 202 ``{handle}`` while the e-mailed approval is pending, then
  200 ``{SAD, expiresIn}`` once, or the CSC error (refused, expired, unknown handle).
"""

from __future__ import annotations

from aiohttp import web

from rssp.api import schemas_factors as schemas
from rssp.api.credentials import bound_hashes, issue_authorization, own_credential
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.credentials import get_credential
from rssp.errors import credential_locked, invalid_param, invalid_request
from rssp.factors import pending
from rssp.factors.messages import Subject
from rssp.factors.model import EMAIL_OTP
from rssp.factors.oob import Binding
from rssp.factors.sending import send_code
from rssp.factors.service import factor_service
from rssp.sam.sad import SadGrant


async def _send(call: Call, parameter: str, locked_text: str) -> web.Response:
    body, services = call.body, call.services
    cred = await own_credential(call)  # a suspended credential's signer needs a code to resume it
    hash_name, digests = bound_hashes(body, services.config.security.max_hashes_per_request, call.version)
    num = body.integer("numSignatures")
    description = body.string("description", max_len=500)
    lang = body.string("lang", max_len=64) or services.config.service.lang
    if num is not None and not 1 <= num <= cred.multisign:
        raise invalid_request("Invalid value for parameter numSignatures")
    subject = Subject(cred.id, num if num is not None else (len(digests) or None), hash_name, digests, description,
                      lang)
    await send_code(services.store, services.hsm, factor_service(call.request.app), cred, Binding(hash_name, digests),
                    subject, call.user.user_id, call.ip, parameter=parameter, locked=invalid_request(locked_text))
    return web.Response(status=204)


async def get_challenge(call: Call) -> web.Response:
    object_id = call.body.required_string("authObjectID", max_len=64)
    if object_id != EMAIL_OTP:
        await own_credential(call)  # an unknown credential is named first
        raise invalid_param("authObjectID")
    return await _send(call, "authObjectID", credential_locked().description)


async def send_otp(call: Call) -> web.Response:
    return await _send(call, "credentialID", "OTP locked")


async def authorize_check(call: Call) -> web.Response:
    handle = call.body.required_string("handle", max_len=256)
    services, user = call.services, call.user
    approved = await pending.poll(services.store, user.user_id, user.client_id, handle)
    if approved is None:
        return web.json_response({"handle": handle}, status=202)
    cred = await get_credential(services.store, approved.credential_id, user.user_id)
    if cred is None:
        raise invalid_param("handle")
    if cred.locked:
        raise credential_locked()
    if cred.status != "enabled":
        raise invalid_request("The credential identified by credentialID is disabled")
    req = approved.request
    grant = SadGrant(user.user_id, cred.id, req.num_signatures, req.hash_name, req.digests)
    return web.json_response(await issue_authorization(services, cred, grant, approved.kek, call.ip))


def register(registry: Registry) -> None:
    registry.add(Method("credentials/authorizeCheck", authorize_check, doc=schemas.AUTHORIZE_CHECK))
    registry.add(Method("credentials/getChallenge", get_challenge, doc=schemas.GET_CHALLENGE))
    registry.add(Method("credentials/sendOTP", send_otp, doc=schemas.SEND_OTP))
