"""``GET /csc/v2/openapi.json``: the OpenAPI 3.1 document of exactly what this server mounts.

Built once per process from the method registry after every extension registered: a method
is in the document if and only if it is mounted (and listed in ``info.methods``), with the
request and response schemas its registration declares (:class:`rssp.api.schema.Doc`), so the
document cannot drift from the code. Methods are listed under ``/csc/v2/``; each is also
served under ``/csc/v1/`` with CSC v1 field names, which the document does not repeat.

Like the CSC OpenAPI 2.1.0.1, every operation lists ``501`` (``notImplementedResponse``): the
answer, ``not_implemented``, for a CSC method this server does not offer
(:func:`rssp.api.middleware.csc_errors`).
"""

from __future__ import annotations

from importlib.metadata import PackageNotFoundError, version
from typing import Any

from aiohttp import web

from rssp.api.call import SERVICES
from rssp.api.info import REGISTRY
from rssp.api.registry import Method, Registry
from rssp.api.schema import ERROR, Doc, obj

PATH = "/csc/v2/openapi.json"
OPENAPI: web.AppKey[dict[str, Any]] = web.AppKey("openapi", dict)
_UNDOCUMENTED = Doc("(no schema declared)", obj(), obj())
_REASONS = {400: "Invalid request", 401: "Missing, invalid or expired token", 403: "Refused (e.g. invalid_hash)",
            404: "Unknown method", 405: "Not POST", 408: "Body not received in time", 413: "Body too large",
            429: "Too many requests: try again after Retry-After", 500: "Internal error",
            503: "Temporarily unavailable: try again after Retry-After"}
# The CSC OpenAPI 2.1.0.1's components/responses/notImplementedResponse, which each of its operations lists.
NOT_IMPLEMENTED: dict[str, Any] = {
    "description": 'The request has failed due to an unimplemented method being requested. '
                   'Error string is "not_implemented".',
    "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}},
}
_NOT_IMPLEMENTED_REF = {"$ref": "#/components/responses/notImplementedResponse"}


def _security(method: Method) -> list[dict[str, list[str]]]:
    if method.auth == "none":
        return []
    if method.auth == "custom":  # auth/login, manages/login: HTTP Basic (or a refresh token in the body)
        return [{"basic": []}, {}]
    return [{"bearer": []}]


def nullable_optionals(schema: dict[str, Any]) -> dict[str, Any]:
    """The request schema as the server reads it: an optional member sent as ``null`` counts as absent.

    (rssp.api.parse.Body treats ``null`` like a missing member, as CSC clients send both.)
    """
    if schema.get("type") == "array" and isinstance(schema.get("items"), dict):
        return {**schema, "items": nullable_optionals(schema["items"])}
    if schema.get("type") != "object" or "properties" not in schema:
        return schema
    required = set(schema.get("required", ()))
    properties = {}
    for name, member in schema["properties"].items():
        member = nullable_optionals(member)
        properties[name] = member if name in required else {"anyOf": [member, {"type": "null"}]}
    return {**schema, "properties": properties}


def _json(schema: dict[str, Any]) -> dict[str, Any]:
    return {"content": {"application/json": {"schema": schema}}}


def _operation(method: Method) -> dict[str, Any]:
    doc = method.doc or _UNDOCUMENTED
    responses: dict[str, Any] = {"200": {"description": "OK", **_json(doc.response)}}
    for status, schema in doc.other.items():
        responses[str(status)] = {"description": "Accepted" if status == 202 else "Done"}
        if schema is not None:
            responses[str(status)].update(_json(schema))
    for status in sorted({*doc.errors, 405, 501}):
        responses[str(status)] = _NOT_IMPLEMENTED_REF if status == 501 else {
            "description": _REASONS.get(status, "Error"), **_json({"$ref": "#/components/schemas/Error"})}
    scopes = sorted(method.scopes) if method.auth == "bearer" else []
    description = f"Token scope: {', '.join(scopes)}." if scopes else ""
    return {
        "operationId": method.name.replace("/", "_"), "summary": doc.summary, "description": description,
        "tags": [doc.tag], "security": _security(method),
        "requestBody": {"required": not method.empty_body, **_json(nullable_optionals(doc.request))},
        "responses": responses,
    }


def _version() -> str:
    try:
        return version("rssp")
    except PackageNotFoundError:
        return "0"


def build(registry: Registry, public_url: str) -> dict[str, Any]:
    """The document for the methods in ``registry`` (in registration order)."""
    return {
        "openapi": "3.1.0",
        "info": {"title": "rssp: CSC API v2 and JT2A extensions", "version": _version(),
                 "description": "Remote Signing Service Provider. Errors are always {error, error_description}."},
        "servers": [{"url": public_url}],
        "paths": {f"/csc/v2/{m.name}": {"post": _operation(m)} for m in registry.methods.values()},
        "components": {
            "schemas": {"Error": ERROR},
            "responses": {"notImplementedResponse": NOT_IMPLEMENTED},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"},
                                "basic": {"type": "http", "scheme": "basic"}},
        },
    }


async def serve_document(request: web.Request) -> web.Response:
    document = request.app[OPENAPI]
    if not document:  # built on first request: every extension has registered by then
        document.update(build(request.app[REGISTRY], request.app[SERVICES].config.public_url))
    return web.json_response(document)


def setup(app: web.Application) -> None:
    app[OPENAPI] = {}
    app.router.add_get(PATH, serve_document)
