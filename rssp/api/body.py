"""A CSC method's request body, as its handler reads it.

The JSON object :func:`rssp.api.middleware.read_body` parsed, with the field names real
clients send mapped to CSC v2 names (:mod:`rssp.api.aliases`: v1 names, snake_case) and
``clientData`` checked, so no handler sees an alias or an oversized ``clientData``.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from aiohttp import web

from rssp.api import aliases
from rssp.api.middleware import read_body
from rssp.api.parse import Body

if TYPE_CHECKING:
    from rssp.api.registry import Method


async def method_body(request: web.Request, method: Method) -> Body:
    """The request's JSON body with the clients' aliases mapped to CSC v2 names; ``clientData`` checked."""
    body = await read_body(request, allow_empty=method.empty_body)
    aliases.normalize(method.name, body)
    body.client_data()
    return body
