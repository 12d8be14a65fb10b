"""``credentials/*``: listing, describing and authorizing a signer's own credentials."""

from __future__ import annotations

from aiohttp import web

from rssp.algorithms import hash_from_oid, oid_for_length
from rssp.api.credential_view import credential_view
from rssp.api.parse import Body, check_digests, decode_digests, is_text
from rssp.api import schemas
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.audit import record
from rssp.credentials import Credential, get_credential, list_credentials
from rssp.credentials.pin_change import hold_pin, refuse_until_pin_changed
from rssp import metrics
from rssp.errors import (CSCError, both_passed, credential_locked, invalid_authentication_data, invalid_param,
                         invalid_request, missing_param, unknown_credential)
from rssp.hsm.types import HashName
from rssp.factors import pending
from rssp.factors.check import Supplied
from rssp.factors.model import EMAIL_LINK, EMAIL_OTP, OOB_IDS
from rssp.factors.model import load as load_factor_set
from rssp.factors.oob import Binding
from rssp.factors.pending import PendingRequest
from rssp.factors.service import factor_service
from rssp.sam.factors import Factors, check_factors
from rssp.services import Services
from rssp.sam.sad import SadGrant, extend_sad, insert_sad
from rssp.sam.sealed_sad import extend_sealed, issue_sad

CERTIFICATES = ("none", "single", "chain")
_IN_BAND = ("PIN", "OTP", EMAIL_OTP)  # authData ids that carry a value
_MAX_FACTOR_LEN = 256  # a PIN or OTP; longer is malformed, not a failed attempt


async def own_credential(call: Call, *, enabled: bool = False, key_only: bool = False) -> Credential:
    """The caller's credential named by ``credentialID``; anything else looks unknown.

    ``key_only``: the caller needs only the owner and key (signHash), which the per-process
    :class:`~rssp.credentials.cache.SigningKeyCache` serves without a database hop.
    """
    credential_id = call.body.required_string("credentialID", max_len=128)
    if key_only:
        cred = await call.services.signing_keys.get(credential_id, call.user.user_id)
    else:
        cred = await get_credential(call.services.store, credential_id, call.user.user_id)
    if cred is None:
        raise unknown_credential()
    if enabled and cred.status != "enabled":
        raise invalid_request("The credential identified by credentialID is disabled")
    return cred


def parse_digests(body: Body, *, required: bool, max_items: int) -> tuple[bytes, ...]:
    values = body.string_list("hashes", required=required, max_items=max_items)
    return () if values is None else decode_digests(values)


def bound_hashes(body: Body, max_items: int, version: str = "v2") -> tuple[HashName | None, tuple[bytes, ...]]:
    """Optional hashes for a SAD, with their algorithm; each must have that algorithm's length.

    CSC v1 has no hash algorithm field in authorize/extendTransaction (pyHanko sends only
    ``hash``), so on ``/csc/v1/`` an absent one is taken from the digest length, which is
    unambiguous among the supported SHA-2 sizes; signHash must then name the same algorithm.
    """
    oid = body.string("hashAlgorithmOID")
    digests = parse_digests(body, required=False, max_items=max_items)
    if not digests:
        return None, ()
    if oid is None and version == "v1":
        oid = oid_for_length(digests[0])
    if oid is None:
        raise missing_param("string", "hashAlgorithmOID")
    hash_name = hash_from_oid(oid)
    check_digests(digests, hash_name)
    return hash_name, digests


def parse_factors(body: Body, *, binding: Binding | None = None, oob: bool = False) -> Factors:
    """``authData`` (v2) or the v1 ``PIN`` / ``OTP`` fields.

    ``PIN``, ``OTP`` and ``EMAIL_OTP`` carry a value; ``EMAIL_LINK`` (out of band, rssp.factors.pending)
    carries none and only where ``oob`` allows it (``credentials/authorize``). ``binding``: the hashes
    being authorized, which an e-mailed code must have been sent for.
    """
    values: dict[str, str | None] = {}
    for entry in body.object_list("authData") or []:
        ident, value = entry.get("id"), entry.get("value")
        if not isinstance(ident, str):
            raise invalid_param("authData")
        if ident in OOB_IDS and oob and value is None and ident not in values:
            values[ident] = None
            continue
        valid = isinstance(value, str) and len(value) <= _MAX_FACTOR_LEN and is_text(value)
        if ident not in _IN_BAND or ident in values or not valid:
            raise invalid_param("authData")
        values[ident] = value
    for name in ("PIN", "OTP"):
        legacy = body.string(name, max_len=_MAX_FACTOR_LEN)
        if legacy is not None:
            if name in values:
                raise both_passed(name, "authData")
            values[name] = legacy
    more = {k: v for k, v in values.items() if k not in ("PIN", "OTP")}
    return Factors(pin=values.get("PIN"), otp=values.get("OTP"), more=Supplied(more, binding or Binding()))


async def list_(call: Call) -> web.Response:
    body = call.body
    if "userID" in body:
        raise invalid_request("userID parameter MUST be null")
    with_info = body.boolean("credentialInfo")
    certificates = body.choice("certificates", CERTIFICATES, "single")
    cert_info = body.boolean("certInfo")
    body.boolean("authInfo")
    only_valid = body.boolean("onlyValid")
    lang = body.string("lang") or call.services.config.service.lang
    creds = await list_credentials(call.services.store, call.user.user_id)
    if only_valid:
        creds = [c for c in creds if c.status == "enabled" and c.cert_status() == "valid"]
    out: dict[str, object] = {"credentialIDs": [c.id for c in creds]}
    if with_info:
        out["credentialInfos"] = [
            {"credentialID": c.id, **credential_view(c, certificates=certificates, cert_info=cert_info,
                                                     version=call.version, lang=lang,
                                                     factor_set=await load_factor_set(call.services.store, c.id))}
            for c in creds
        ]
    if only_valid:
        out["onlyValid"] = True
    return web.json_response(out)


async def info(call: Call) -> web.Response:
    certificates = call.body.choice("certificates", CERTIFICATES, "single")
    cert_info = call.body.boolean("certInfo")
    call.body.boolean("authInfo")
    lang = call.body.string("lang") or call.services.config.service.lang
    cred = await own_credential(call)
    return web.json_response(credential_view(cred, certificates=certificates, cert_info=cert_info,
                                             version=call.version, lang=lang,
                                             factor_set=await load_factor_set(call.services.store, cred.id)))


async def authorize(call: Call) -> web.Response:
    body, services = call.body, call.services
    num = body.integer("numSignatures", required=True)
    cred = await own_credential(call, enabled=True)
    refuse_until_pin_changed(cred)
    if num < 1:
        raise invalid_request("Invalid value for parameter numSignatures")
    if num > cred.multisign:
        raise invalid_request("Numbers of signatures is too high")
    hash_name, digests = bound_hashes(body, services.config.security.max_hashes_per_request, call.version)
    if len(digests) > num:
        raise invalid_request("Invalid value for parameter numSignatures")
    if cred.scal == "2" and not digests:
        raise missing_param("array", "hashes")
    description = body.string("description", max_len=500)
    factors = parse_factors(body, binding=Binding(hash_name, digests), oob=True)
    try:
        kek = await check_factors(services.store, services.hsm, cred, factors,
                                  max_failures=services.config.security.max_failed_attempts,
                                  actor=call.user.user_id, client_ip=call.ip)
    except CSCError as refused:
        if refused.description == credential_locked().description:
            metrics.m().lockouts.inc()
        raise
    if factors.more is not None and EMAIL_LINK in factors.more.values:  # approved out of band: 202 + handle
        request = PendingRequest(num, hash_name, digests, description, body.string("lang", max_len=64))
        handle = await pending.start(services.store, services.hsm, factor_service(call.request.app), cred,
                                     call.user.client_id, request, kek, call.ip)
        return web.json_response({"handle": handle}, status=202)
    grant = SadGrant(call.user.user_id, cred.id, num, hash_name, digests)
    return web.json_response(await issue_authorization(services, cred, grant, kek, call.ip))


async def issue_authorization(services: Services, cred: Credential, grant: SadGrant, kek: bytes | None,
                              ip: str | None) -> dict[str, object]:
    """The SAD for a grant whose factors were checked (now, or by an out-of-band approval)."""
    security = services.config.security
    ttl, lifetime = security.sad_ttl_seconds, security.sad_max_lifetime_seconds
    # Level 3: the SAD row gets the SAM's MAC and the KEK sealed to the SAD (made before the transaction).
    sealed = None
    if cred.factor_bound:
        if kek is None:  # check_factors returns it for every level-3 credential it lets through
            raise RuntimeError("a level-3 credential's factors were checked without its key-encryption key")
        sealed = await issue_sad(services.hsm, grant, kek, ttl, lifetime)
    async with services.store.write() as conn:
        if not await hold_pin(conn, cred):  # the PIN changed since the factors were checked
            raise invalid_authentication_data()
        if sealed is not None:
            await sealed.insert(conn)
            sad = sealed.value
        else:
            sad = await insert_sad(conn, grant, ttl, lifetime)
        await record(conn, actor=grant.user_id, action="credential.authorize", target=cred.id, outcome="ok",
                     client_ip=ip, detail={"numSignatures": grant.count, "hashes": [d.hex() for d in grant.digests]})
    return {"SAD": sad, "expiresIn": ttl}


async def extend_transaction(call: Call) -> web.Response:
    body, services = call.body, call.services
    sad = body.required_string("SAD", max_len=256)
    cred = await own_credential(call, enabled=True)
    hash_name, digests = bound_hashes(body, services.config.security.max_hashes_per_request, call.version)
    asked = SadGrant(call.user.user_id, cred.id, 0, hash_name, digests)
    ttl = services.config.security.sad_ttl_seconds
    if cred.factor_bound:
        new_sad, expires_in = await extend_sealed(services.store, services.hsm, sad, asked, ttl, call.ip)
    else:
        new_sad, expires_in = await extend_sad(services.store, sad, asked, ttl, call.ip)
    return web.json_response({"SAD": new_sad, "expiresIn": expires_in})


def register(registry: Registry) -> None:
    registry.add(Method("credentials/list", list_, empty_body=True, doc=schemas.LIST))
    registry.add(Method("credentials/info", info, doc=schemas.CREDENTIAL_INFO))
    registry.add(Method("credentials/authorize", authorize, doc=schemas.AUTHORIZE))
    registry.add(Method("credentials/extendTransaction", extend_transaction, doc=schemas.EXTEND))
