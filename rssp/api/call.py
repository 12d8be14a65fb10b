"""What a CSC method's handler is given about one request (:class:`Call`), and where the app keeps its services.

The dispatcher (:mod:`rssp.api.dispatch`) builds the :class:`Call` once the shared steps passed,
so a handler reads a parsed body and an authenticated principal, never raw HTTP.
"""

from __future__ import annotations

from dataclasses import dataclass

from aiohttp import web

from rssp.api.middleware import client_ip
from rssp.api.parse import Body
from rssp.auth.tokens import Principal
from rssp.services import Services

SERVICES: web.AppKey[Services] = web.AppKey("services", Services)


@dataclass
class Call:
    """Everything a handler needs about one request."""

    request: web.Request
    body: Body
    services: Services
    version: str
    principal: Principal | None = None
    token: str | None = None  # the Bearer token (a ``token_at_spend`` method checks it itself)

    @property
    def ip(self) -> str | None:
        return client_ip(self.request)

    @property
    def user(self) -> Principal:
        if self.principal is None:  # a handler of an ``auth="none"`` or ``token_at_spend`` method asked
            raise RuntimeError("this call has no authenticated principal")
        return self.principal
