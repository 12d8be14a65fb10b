"""JT2A "Credential lifecycle from CA/RA" (DESIGN §3.2): ``manages/*``.

Each CA registered in rssp.toml (``[ca.ID]``, ``rssp ca add``) has one management client;
``manages/login`` gives it a ``manage`` token bound to its caID, and the other methods act only
on credentials of that CA. Methods are mounted only when at least one CA is configured.
"""

from __future__ import annotations

import logging

from aiohttp import web

from extensions.manages import handlers, schemas
from extensions.manages.clients import MANAGE_SCOPE
from rssp.api.registry import Method, Registry
from rssp.ca.registry import CAPolicy, ca_policy
from rssp.config import ConfigError
from rssp.services import Services

log = logging.getLogger("extensions.manages")

_MANAGE = frozenset({MANAGE_SCOPE})


def _policies(services: Services) -> dict[str, CAPolicy]:
    """Each CA's policy, read once: a missing or unreadable anchor stops start-up, naming the CA."""
    out = {}
    for ca_id, settings in services.config.cas.items():
        try:
            out[ca_id] = ca_policy(ca_id, settings, services.config.directory)
        except (OSError, ValueError, TypeError) as exc:
            raise ConfigError(f"[ca.{ca_id}]: {type(exc).__name__}: {exc}") from None
    return out


def setup(app: web.Application, registry: Registry, services: Services) -> None:
    if not services.config.cas:
        log.info("no CA configured in [ca]: manages/* not mounted")
        return
    services.extras[handlers.POLICIES] = _policies(services)
    registry.add(Method("manages/login", handlers.login, auth="custom", empty_body=True, doc=schemas.LOGIN))
    registry.add(Method("manages/generateKey", handlers.generate_key, scopes=_MANAGE, doc=schemas.GENERATE_KEY))
    registry.add(Method("manages/linkEid", handlers.link_eid, scopes=_MANAGE, doc=schemas.LINK_EID))
    registry.add(Method("manages/authorize", handlers.authorize, scopes=_MANAGE, doc=schemas.AUTHORIZE))
    registry.add(Method("manages/linkCert", handlers.link_cert, scopes=_MANAGE, doc=schemas.LINK_CERT))
    registry.add(Method("manages/deleteKey", handlers.delete_key, scopes=_MANAGE, doc=schemas.DELETE_KEY))
