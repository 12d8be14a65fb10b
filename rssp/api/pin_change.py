"""``credentials/changePIN``: the signer replaces the PIN that an operator or an RA chose.

A JT2A extension method in CSC style, like ``credentials/suspend`` (:mod:`rssp.api.suspension`).
The signer is confirmed by the Bearer token (scope ``service``) and by the credential's
current factors in ``authData`` (the PIN, and the OTP at level 2 and above; with a factor set,
what its expression asks among ``PIN``, ``OTP`` and ``EMAIL_OTP`` — a code asked for with
``credentials/getChallenge`` without hashes), checked and counted toward the lockout exactly as
in ``credentials/authorize``. A credential that needs a passkey, an OpenID Provider sign-in or
an e-mailed approval link cannot be confirmed in a request body: it is refused, nothing counted. ``requestID`` makes the
request replay-proof: the same requestID again answers 204 and changes nothing.
What the change does is :mod:`rssp.credentials.pin_change`.

In: ``credentialID``, ``authData``, ``newPIN`` (the level's PIN policy), ``requestID`` (1-128
characters). Out: 204, no body.
"""

from __future__ import annotations

from aiohttp import web

from rssp.api.credentials import own_credential, parse_factors
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.api.schema import CLIENT_DATA, Doc, array, obj, one_of, string
from rssp.credentials.pin_change import (PinChange, PinChangeError, apply, check_new_pin, new_secrets, reachable,
                                         replayed)
from rssp.errors import invalid_param, invalid_request, missing_param
from rssp.sam.factors import check_factors

_MAX_PIN = 256  # longer is malformed; the level's policy explains shorter ones

CHANGE_PIN = Doc(
    "Change the credential's PIN (the signer's own, replacing the one an operator or RA chose); "
    "revokes the credential's SADs and credential tokens",
    obj(("credentialID", "newPIN", "requestID"), credentialID=string(),
        authData=array(obj(("id", "value"), id=one_of("PIN", "OTP", "EMAIL_OTP"), value=string()),
                       "The current factors: PIN, and OTP (or EMAIL_OTP, per the credential's expression) at "
                       "level 2 and above"),
        newPIN=string("Levels 1-2: 4-32 digits; level 3: 8-64 printable ASCII, a letter and a digit"),
        requestID=string("Replay protection: the same requestID again changes nothing", minLength=1, maxLength=128),
        PIN=string(), OTP=string(), clientData=CLIENT_DATA),
    obj(),
    other={204: None},
    tag="JT2A credentials",
)


async def change_pin(call: Call) -> web.Response:
    body, services = call.body, call.services
    request_id = body.required_string("requestID", max_len=128)
    if not request_id.strip():
        raise invalid_param("requestID")
    new_pin = body.required_string("newPIN", max_len=_MAX_PIN)
    factors = parse_factors(body)
    if factors.pin is None:  # the signer confirms with the credential's current factors, always
        raise missing_param("array", "authData")
    cred = await own_credential(call)
    change = PinChange(cred, call.user.user_id, request_id, call.ip)
    try:
        if await replayed(services.store, change):
            return web.Response(status=204)
        check_new_pin(cred, new_pin, factors.pin)
        await reachable(services.store, cred)
        kek = await check_factors(services.store, services.hsm, cred, factors,
                                  max_failures=services.config.security.max_failed_attempts,
                                  actor=call.user.user_id, client_ip=call.ip)
        pin_hash, wrapped = await new_secrets(services.hsm, cred, kek, new_pin)
        await apply(services.store, change, pin_hash, wrapped)
    except PinChangeError as exc:
        raise invalid_request(str(exc)) from None
    return web.Response(status=204)


def register(registry: Registry) -> None:
    registry.add(Method("credentials/changePIN", change_pin, doc=CHANGE_PIN))
