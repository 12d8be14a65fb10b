"""``info``: what this RSSP is and what it can do."""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rssp.algorithms import HASH_DISPLAY, SIGN_ALGOS
from rssp.api import schemas
from rssp.api.registry import Call, Method, Registry
from rssp.api.signdoc_request import ENVELOPES, FORMATS

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
INFO_EXTRAS: web.AppKey[dict[str, Any]] = web.AppKey("info_extras", dict)


async def info(call: Call) -> web.Response:
    call.body.string("lang")
    config = call.services.config
    service = config.service
    app = call.request.app
    body: dict[str, Any] = {
        "specs": "2.0.0.2",
        "name": service.name,
        "logo": service.logo or f"{config.public_url}/logo.png",
        "region": service.region,
        "lang": service.lang,
        "description": service.description,
        "authType": ["basic"],
        "methods": app[REGISTRY].names(),
        "asynchronousOperationMode": True,  # operationMode "A" and signatures/signPolling (rssp.jobs)
        "validationInfo": True,
        "signAlgorithms": {"algos": list(SIGN_ALGOS)},
        "signature_formats": {"formats": list(FORMATS), "envelope_properties": [list(ENVELOPES[f]) for f in FORMATS]},
        "conformance_levels": ["Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA"],
        "supportedHashTypes": list(HASH_DISPLAY.values()),
        "extensions": {"jt2a": "1"},
    }
    for key, value in app[INFO_EXTRAS].items():
        body[key] = value
    return web.json_response(body)


def register(registry: Registry) -> None:
    registry.add(Method("info", info, auth="none", empty_body=True, doc=schemas.INFO))
