"""The CSC method table: what is mounted is exactly what ``info.methods`` lists.

Core methods and extensions register here the same way; each registration mounts the method
under ``/csc/v2/`` and, for clients written against CSC v1 (pyHanko's CSCSigner), ``/csc/v1/``.
The dispatcher does the shared steps in order: authenticate the Bearer token and check its
scope, parse the body, apply the field aliases real clients send (:mod:`rssp.api.aliases`: v1
names, snake_case), then call the handler. A method with ``token_at_spend`` (signHash) checks
its token itself, in the store call that spends its SAD; a bad token still answers before a bad body.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field

from aiohttp import web

from rssp.api import aliases
from rssp.api.middleware import client_ip, read_body
from rssp.api.parse import Body
from rssp.api.schema import Doc
from rssp.auth.tokens import Principal
from rssp.errors import CSCError, invalid_request, invalid_token, wrong_scope
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
        assert self.principal is not None
        return self.principal


MethodHandler = Callable[[Call], Awaitable[web.StreamResponse]]

@dataclass(frozen=True)
class Method:
    name: str
    handler: MethodHandler
    auth: str = "bearer"  # bearer | none | custom (HTTP Basic: the challenge of its 401s, rssp.api.middleware)
    scopes: frozenset[str] = frozenset({"service"})
    empty_body: bool = False
    # The handler checks the Bearer token in the transaction that spends (signHash: one database hop);
    # it gets ``Call.token`` and no principal, and calls :func:`authenticate` for a request it refuses before.
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
                handler = _dispatcher(method, version)
                handler.large_body = method.large_body  # type: ignore[attr-defined]  # read by complete_body
                handler.auth_scheme = "Basic" if method.auth == "custom" else "Bearer"  # type: ignore[attr-defined]
                app.router.add_post(f"/csc/{version}/{method.name}", handler)


def bearer_token(request: web.Request) -> str:
    header = request.headers.get("Authorization")
    if header is None:
        raise CSCError(401, "invalid_token", "Missing access token")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise invalid_request("Malformed authorization header")
    if not token.isascii():  # aiohttp hands over non-UTF-8 header bytes as lone surrogates
        raise invalid_token()
    return token.strip()


async def authenticate(services: Services, token: str, scopes: frozenset[str]) -> Principal:
    """Who holds ``token``, if its scope is one of ``scopes``; else the CSC token errors (401)."""
    principal = await services.tokens.authenticate(token)
    if principal.scope not in scopes:
        raise wrong_scope()
    return principal


async def method_body(request: web.Request, method: Method) -> Body:
    """The request's JSON body with the clients' aliases mapped to CSC v2 names; ``clientData`` checked."""
    body = await read_body(request, allow_empty=method.empty_body)
    aliases.normalize(method.name, body)
    body.client_data()
    return body


def _dispatcher(method: Method, version: str) -> Callable[[web.Request], Awaitable[web.StreamResponse]]:
    async def dispatch(request: web.Request) -> web.StreamResponse:
        services = request.app[SERVICES]
        token = bearer_token(request) if method.auth == "bearer" else None
        principal = None
        if token is not None and not method.token_at_spend:
            principal = await authenticate(services, token, method.scopes)
        try:
            body = await method_body(request, method)
        except CSCError:
            if token is not None and principal is None:  # token_at_spend: 401 before 400 all the same
                await authenticate(services, token, method.scopes)
            raise
        return await method.handler(Call(request, body, services, version, principal, token))

    return dispatch
