"""``credentials/create`` (201) and ``credentials/delete`` (204), CSC API v2.2.

Only with a token of scope ``credential-creation`` / ``credential-deletion`` from the OAuth
AS, which the signer approved on its consent page; every other method refuses such tokens.

``credentials/create`` in: ``credentialCreationRequest`` {``certificatePolicy``,
``subjectData``} (CSC Data Model; ``subjectData`` is accepted and not used: the subject comes
from the operator's policy and the signer's registered name), and the ``credentials/info``
flags ``credentialInfo``, ``certificates``, ``certInfo``, ``authInfo``, ``lang`` (sent by the
EUDI relying-party client). Out: ``credentialID``; once only, the new credential's ``PIN`` and,
when the policy enrols TOTP, ``otpauthURI``; with ``credentialInfo: true`` also the
``credentials/info`` fields. ``credentials/delete`` in: ``credentialID``; out: nothing.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rssp.api import schemas
from rssp.api.credential_view import credential_view
from rssp.api.credentials import CERTIFICATES
from rssp.api.parse import Body
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.config import Config
from rssp.credentials import get_credential
from rssp.credentials.policy import CreationPolicy
from rssp.credentials.self_service import create_own, delete_own
from rssp.errors import invalid_param
from rssp.oauth.scopes import CREATION, DELETION

POLICY: web.AppKey[CreationPolicy] = web.AppKey("creation_policy", CreationPolicy)


def _creation_request(body: Body) -> str | None:
    """The ``certificatePolicy`` of ``credentialCreationRequest`` (an object when present)."""
    raw = body.data.get("credentialCreationRequest")
    if raw is None:
        return None
    if not isinstance(raw, dict):
        raise invalid_param("credentialCreationRequest")
    request = Body(raw)
    if raw.get("subjectData") is not None and not isinstance(raw["subjectData"], dict):
        raise invalid_param("subjectData")
    return request.string("certificatePolicy", max_len=128)


async def create(call: Call) -> web.Response:
    body = call.body
    certificate_policy = _creation_request(body)
    with_info = body.boolean("credentialInfo")
    certificates = body.choice("certificates", CERTIFICATES, "single")
    cert_info = body.boolean("certInfo")
    body.boolean("authInfo")
    lang = body.string("lang") or call.services.config.service.lang
    made = await create_own(call.services, call.user, call.request.app[POLICY], certificate_policy, call.ip)
    out: dict[str, Any] = {"credentialID": made.credential_id}
    if with_info:
        cred = await get_credential(call.services.store, made.credential_id, call.user.user_id)
        if cred is not None:
            out.update(credential_view(cred, certificates=certificates, cert_info=cert_info, version=call.version,
                                       lang=lang))
    if made.pin is not None:
        out["PIN"] = made.pin
    if made.otpauth_uri is not None:
        out["otpauthURI"] = made.otpauth_uri
    return web.json_response(out, status=201, headers={"Cache-Control": "no-store"})


async def delete(call: Call) -> web.Response:
    credential_id = call.body.required_string("credentialID", max_len=128)
    await delete_own(call.services, call.user, credential_id, call.ip)
    return web.Response(status=204)


def setup(app: web.Application, config: Config) -> None:
    """The operator's creation policy, checked at start-up (a bad ``[credentials]`` stops the server)."""
    app[POLICY] = CreationPolicy.from_config(config)


def register(registry: Registry) -> None:
    registry.add(Method("credentials/create", create, scopes=frozenset({CREATION}), empty_body=True,
                        doc=schemas.CREATE))
    registry.add(Method("credentials/delete", delete, scopes=frozenset({DELETION}), doc=schemas.DELETE))
