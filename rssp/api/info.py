"""``info``: what this RSSP is and what it can do, in the dialect of the path it is asked on.

``/csc/v2/info`` answers CSC v2.2 (``specs`` "2.2.0.0"): the v2.0 fields every v2 client reads
plus the 2.1/2.2 ones (``supportedHashTypes``, ``documentTypes``, ``signature_formats.allowMix``,
``conformance_levels``), which v2.0 clients ignore. The authorization server is named by
``oauth2Issuer`` (RFC 8414), understood by v2.0 and v2.2 clients alike; ``oauth2Servers`` is
not sent, since CSC allows exactly one of the three and v2.0 clients know only the first two.
``/csc/v1/info`` answers CSC v1.0.4.0 (``specs`` "1.0.4.0") with ``oauth2``, the base URI v1
clients join ``oauth2/authorize`` to (documenso reads nothing else).
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from rssp.algorithms import HASH_DISPLAY, SIGN_ALGOS
from rssp.api import schemas
from rssp.api.call import Call
from rssp.api.registry import Method, Registry
from rssp.api.signdoc_request import ENVELOPES, FORMATS

REGISTRY: web.AppKey[Registry] = web.AppKey("registry", Registry)
# What other parts of the server add to ``info``, per API version ("v1", "v2"): the OAuth AS fields.
INFO_EXTRAS: web.AppKey[dict[str, dict[str, Any]]] = web.AppKey("info_extras", dict)
SPECS = {"v1": "1.0.4.0", "v2": "2.2.0.0"}
DOCUMENT_TYPES = ["sod"]  # signDoc signs the documents it is sent as they are (OAS 2.1: "sod", the default)


async def info(call: Call) -> web.Response:
    call.body.string("lang")
    config = call.services.config
    service = config.service
    app = call.request.app
    body: dict[str, Any] = {
        "specs": SPECS[call.version],
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
        "signature_formats": {"formats": list(FORMATS), "envelope_properties": [list(ENVELOPES[f]) for f in FORMATS],
                              "allowMix": True},  # each signDoc entry has its own format and envelope
        "documentTypes": DOCUMENT_TYPES,
        "conformance_levels": ["Ades-B-B", "Ades-B-T", "Ades-B-LT", "Ades-B-LTA"],
        "supportedHashTypes": list(HASH_DISPLAY.values()),
        "extensions": {"jt2a": "1"},
    }
    body.update(app[INFO_EXTRAS].get(call.version, {}))
    return web.json_response(body)


def register(registry: Registry) -> None:
    registry.add(Method("info", info, auth="none", empty_body=True, doc=schemas.INFO))
