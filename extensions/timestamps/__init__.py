"""JT2A "Multiple TSAs" (DESIGN §3.2): ``timestamps/list``, ``timestamps/info`` and
``signatures/timestamp`` with ``timestampID``.

``setup`` builds the TSA pool from the ``[timestamps]`` table of rssp.toml, publishes it in
``Services.extras`` under :data:`rssp.tsa.TSA_POOL` (so signDoc and others reach it through
the core protocol, never through this package), and registers the three methods. An
instance with no TSA configured (``rssp init --production`` before the operator adds one)
registers none of them, so ``info.methods`` never advertises a method that cannot work.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from extensions.timestamps import handlers, schemas
from rssp.api.registry import Method, Registry
from rssp.services import Services
from rssp.tsa import TSA_POOL
from tsa_clients.pool import TsaPool

log = logging.getLogger("extensions.timestamps")


def setup(app: web.Application, registry: Registry, services: Services) -> None:
    section = services.config.section("timestamps")
    pool = TsaPool.from_config(section, services.config.directory)
    if not pool.members:
        log.info("no TSA configured in [timestamps]: timestamp methods not mounted")
        return
    services.extras[TSA_POOL] = pool
    # certvalidator logs every OCSP/CRL fetch at INFO; the pool logs what matters (TSA failures).
    logging.getLogger("pyhanko_certvalidator.fetchers").setLevel(logging.WARNING)

    async def pool_ctx(_app: web.Application) -> AsyncIterator[None]:
        await pool.start()
        yield
        await pool.close()

    app.cleanup_ctx.append(pool_ctx)
    registry.add(Method("signatures/timestamp", handlers.timestamp, doc=schemas.TIMESTAMP))
    registry.add(Method("timestamps/list", handlers.list_tsas, doc=schemas.LIST))
    registry.add(Method("timestamps/info", handlers.tsa_info, doc=schemas.INFO))
