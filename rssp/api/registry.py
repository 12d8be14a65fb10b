"""The CSC method table: what is mounted is exactly what ``info.methods`` lists.

Core methods and extensions register here the same way; each registration mounts the method
under ``/csc/v2/`` and, for clients written against CSC v1 (pyHanko's CSCSigner), ``/csc/v1/``,
each route served by the shared steps of :mod:`rssp.api.dispatch` (token, body, handler). A
method with ``token_at_spend`` (signHash) checks its token itself, in the store call that spends
its SAD (one database hop); a bad token still answers before a bad body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from rssp.api.call import Call
from rssp.api.dispatch import dispatcher
from rssp.api.schema import Doc

MethodHandler = Callable[[Call], Awaitable[web.StreamResponse]]


@dataclass(frozen=True)
class Method:
    name: str
    handler: MethodHandler
    auth: str = "bearer"  # bearer | none | custom (HTTP Basic: the challenge of its 401s, rssp.api.middleware)
    scopes: frozenset[str] = frozenset({"service"})
    empty_body: bool = False
    # The handler checks the Bearer token in the transaction that spends (signHash: one database hop);
    # it gets ``Call.token`` and no principal, and calls :func:`rssp.api.bearer.authenticate` for a
    # request it refuses before that call.
    token_at_spend: bool = False
    large_body: bool = False  # takes whole documents: bodies up to Config.max_request_bytes
    doc: Doc | None = None  # request/response schemas for the served OpenAPI (rssp.api.openapi)


@dataclass
class Registry:
    methods: dict[str, Method] = field(default_factory=dict)

    def add(self, method: Method) -> None:
        if method.name in self.methods:
            raise ValueError(f"method {method.name} registered twice")
        self.methods[method.name] = method

    def names(self) -> list[str]:
        return list(self.methods)

    def mount(self, app: web.Application) -> None:
        for method in self.methods.values():
            for version in ("v1", "v2"):
                handler = dispatcher(method, version)
                handler.large_body = method.large_body  # type: ignore[attr-defined]  # read by complete_body
                handler.auth_scheme = "Basic" if method.auth == "custom" else "Bearer"  # type: ignore[attr-defined]
                app.router.add_post(f"/csc/{version}/{method.name}", handler)
