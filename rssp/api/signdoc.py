"""``signatures/signDoc``: signed documents (PAdES, CAdES) and signatures over document digests.

The order is that of ``signHash``: parse and check everything (:mod:`rssp.api.signdoc_request`),
refuse inputs that cannot be signed, spend the SAD for what the signer authorized
(:mod:`rssp.sam.documents`), then build the outputs (:mod:`rssp.documents.service`).
"""

from __future__ import annotations

from functools import partial

from aiohttp import web

from rssp.api.credentials import own_credential
from rssp.api.polling import accepted, async_request
from rssp.api import schemas
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.api.signatures import SCOPES, sad_or_credential_token
from rssp.api.signdoc_request import parse_request, plan_outputs
from rssp.documents.response import signdoc_response
from rssp.credentials import Credential, list_credentials
from rssp.errors import invalid_param, invalid_request
from rssp.jobs.sign_doc import new_job
from rssp.jobs.store import insert_job
from rssp.sam.documents import DocumentAuthorization, authorize_documents
from rssp.tsa import TSA_POOL, TimestampAuthority, UnknownTsa


async def sign_doc(call: Call) -> web.Response:
    services, body = call.services, call.body
    req = parse_request(body)
    mode = async_request(body, services)
    cred = await _credential(call, req.credential_id, req.qualifier)
    sad = sad_or_credential_token(call, cred.id)
    limits = services.config.documents
    outputs = plan_outputs(req, cred, max_outputs=services.config.security.max_hashes_per_request,
                           max_bytes=limits.max_document_bytes)
    pool = _pool(call, req.timestamp_id, any(o.options.level != "B-B" for o in outputs))
    await services.documents.check(outputs)
    auth = DocumentAuthorization(cred, call.user.user_id, sad, tuple(o.mechanism for o in outputs),
                                 tuple(o.authorized for o in outputs), call.ip)
    if mode is not None:  # operationMode "A": spend now, build the documents in a job (rssp.jobs.sign_doc)
        job = new_job(outputs, user_id=call.user.user_id, client_id=call.user.client_id, credential_id=cred.id,
                      timestamp_id=req.timestamp_id, with_info=req.return_validation_info,
                      validity_ms=mode.validity_ms, response_uri=mode.response_uri, client_ip=call.ip)
        await authorize_documents(services.signing, auth, then=partial(insert_job, job))
        return accepted(services, job)
    permit = await authorize_documents(services.signing, auth)
    signed = await services.documents.sign(outputs, permit, cred, pool, req.timestamp_id)
    return web.json_response(signdoc_response(signed, req.return_validation_info))


async def _credential(call: Call, credential_id: str | None, qualifier: str | None) -> Credential:
    """By ``credentialID``, or the signer's first enabled credential with ``signatureQualifier``."""
    if credential_id is not None:
        call.body.data["credentialID"] = credential_id
        return await own_credential(call, enabled=True)
    for cred in await list_credentials(call.services.store, call.user.user_id):
        if cred.status == "enabled" and cred.signature_qualifier == qualifier:
            return cred
    raise invalid_param("signatureQualifier")


def _pool(call: Call, timestamp_id: str | None, needed: bool) -> TimestampAuthority | None:
    pool: TimestampAuthority | None = call.services.extras.get(TSA_POOL)
    if timestamp_id is not None:
        if pool is None:
            raise invalid_param("timestampID")
        try:
            pool.describe(timestamp_id)
        except UnknownTsa:
            raise invalid_param("timestampID") from None
    if needed and pool is None:
        raise invalid_request("No TSA is configured: conformance levels above AdES-B-B are not available")
    return pool


def register(registry: Registry) -> None:
    registry.add(Method("signatures/signDoc", sign_doc, scopes=SCOPES, large_body=True, doc=schemas.SIGN_DOC))
