"""``signatures/signDoc``: signed documents (PAdES, CAdES) and signatures over document digests.

The order is that of ``signHash``: parse and check everything (:mod:`rssp.api.signdoc_request`),
refuse inputs that cannot be signed, spend the SAD for what the signer authorized
(:mod:`rssp.sam.documents`), then build the outputs (:mod:`rssp.documents.service`).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rssp.api.credentials import own_credential
from rssp.api.parse import encode_b64
from rssp.api.registry import Call, Method, Registry
from rssp.api.signatures import SCOPES, sad_or_credential_token
from rssp.api.signdoc_request import parse_request, plan_outputs
from rssp.credentials import Credential, list_credentials
from rssp.documents.model import SignedOutput
from rssp.errors import invalid_param, invalid_request
from rssp.sam.documents import DocumentAuthorization, authorize_documents
from rssp.tsa import TSA_POOL, TimestampAuthority, UnknownTsa


async def sign_doc(call: Call) -> web.Response:
    services, body = call.services, call.body
    req = parse_request(body)
    if body.choice("operationMode", ("S", "A"), "S") != "S":
        raise invalid_param("operationMode")
    cred = await _credential(call, req.credential_id, req.qualifier)
    sad = sad_or_credential_token(call, cred.id)
    limits = services.config.documents
    outputs = plan_outputs(req, cred, max_outputs=services.config.security.max_hashes_per_request,
                           max_bytes=limits.max_document_bytes)
    pool = _pool(call, req.timestamp_id, any(o.options.level != "B-B" for o in outputs))
    await services.documents.check(outputs)
    auth = DocumentAuthorization(cred, call.user.user_id, sad, tuple(o.mechanism for o in outputs),
                                 tuple(o.authorized for o in outputs), call.ip)
    permit = await authorize_documents(services.signing, auth)
    signed = await services.documents.sign(outputs, permit, cred, pool, req.timestamp_id)
    return web.json_response(_response(signed, req.return_validation_info))


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


def _response(signed: list[SignedOutput], with_info: bool) -> dict[str, Any]:
    out: dict[str, Any] = {}
    documents = [encode_b64(s.document) for s in signed if s.document is not None]
    signatures = [encode_b64(s.signature) for s in signed if s.signature is not None]
    if documents:
        out["DocumentWithSignature"] = documents
    if signatures:
        out["SignatureObject"] = signatures
    if with_info:
        out["validationInfo"] = {
            name: [encode_b64(v) for v in dict.fromkeys(x for s in signed for x in getattr(s.validation_info, name))]
            for name in ("ocsp", "crl", "certificates")
        }
    return out


def register(registry: Registry) -> None:
    registry.add(Method("signatures/signDoc", sign_doc, scopes=SCOPES, large_body=True))
