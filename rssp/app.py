"""The aiohttp application: CSC methods from core and from extensions, one error format."""

from __future__ import annotations

import base64
from collections.abc import AsyncIterator
from typing import Any

from aiohttp import web

from rssp import health, plugins
from rssp.api import (auth, credentials, info, lifecycle, oob, openapi, pin_change, polling, signatures, signdoc,
                      suspension)
from rssp.api import oauth
from rssp.api.access import TRAFFIC, Traffic, access
from rssp.api.info import INFO_EXTRAS, REGISTRY
from rssp.api.middleware import complete_body, csc_errors
from rssp.api.call import SERVICES
from rssp.api.registry import Registry
from rssp.config import Config
from rssp.factors import routes as signer_pages
from rssp.factors.service import FACTORS, of_services
from rssp.oauth.settings import OAuthSettings
from rssp.auth import argon2_cost
from rssp.sam import totp_lead
from rssp.services import Services

# A 1x1 transparent PNG: ``info.logo`` must be a URI that serves an image.
_LOGO = base64.b64decode(
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg=="
)


async def _logo(_request: web.Request) -> web.Response:
    return web.Response(body=_LOGO, content_type="image/png")


def create_app(config: Config, services: Services | None = None, *, start_services: bool = True) -> web.Application:
    """Build the app; with ``start_services`` the HSM session and database open on start-up."""
    services = services or Services.build(config)
    totp_lead.configure(config)  # TEST-ONLY TOTP steps ahead: honoured on a development instance only
    argon2_cost.configure(config.security, announce=True)  # the cost of new password and PIN hashes
    app = web.Application(client_max_size=config.max_request_bytes,
                          middlewares=[access, csc_errors, complete_body(config.server.body_timeout_seconds,
                                                                 config.server.max_body_bytes)])
    app[SERVICES] = services
    app[TRAFFIC] = Traffic()
    extras: dict[str, dict[str, Any]] = {"v1": {}, "v2": {}}  # what plug-ins add to info, per API version
    app[INFO_EXTRAS] = extras
    registry = Registry()
    for module in (info, auth, credentials, lifecycle, oob, signatures, signdoc, polling, suspension, pin_change):
        module.register(registry)
    lifecycle.setup(app, config)  # the [credentials] policy of credentials/create
    app[FACTORS] = of_services(services.extras, config)  # e-mailed codes, passkeys, OpenID Providers (#14)
    for setup in plugins.extensions():
        setup(app, registry, services)
    registry.mount(app)
    app[REGISTRY] = registry
    app.router.add_get("/logo.png", _logo)
    health.setup(app)  # GET /healthz, /readyz
    openapi.setup(app)  # GET /csc/v2/openapi.json, from the registry just mounted
    oauth.setup(app, OAuthSettings.from_config(config))  # OAuth 2.0 AS (issue 3): form-encoded routes
    signer_pages.setup(app)  # /signer/*: the e-mailed approval link, passkey registration
    if start_services:
        app.cleanup_ctx.append(_services_ctx)
    return app


async def _services_ctx(app: web.Application) -> AsyncIterator[None]:
    services = app[SERVICES]
    await services.start()
    yield
    await services.close()
