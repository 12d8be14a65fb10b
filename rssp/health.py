"""``GET /healthz`` and ``GET /readyz``, as load balancers and Kubernetes probe them.

``/healthz`` says the process is alive and its event loop answers: always 200 while it runs.
``/readyz`` says this process can serve signing requests now: the database answers a query,
the HSM session answers a token search, and (when TSAs are configured) at least one TSA was
seen working by the pool's background prober. Each check has a short time limit, so a probe
never hangs with the dependency it checks. While the process is shutting down ``/readyz``
answers 503 ``stopping``, so a balancer takes it out before it stops accepting.

The answer names each check and ``ok`` or ``failed``; never an address, URL or error text.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable

from aiohttp import web
from sqlalchemy import text

from rssp.api.access import TRAFFIC
from rssp.services import Services
from rssp.tsa import TSA_POOL

log = logging.getLogger("rssp.health")

CHECK_SECONDS = 2.0


def _select_one(conn: object) -> object:
    return conn.execute(text("SELECT 1")).scalar()  # type: ignore[attr-defined]


async def _check(name: str, probe: Callable[[], Awaitable[object]]) -> bool:
    try:
        async with asyncio.timeout(CHECK_SECONDS):
            await probe()
        return True
    except Exception as exc:
        log.warning("readiness check %s failed: %s", name, type(exc).__name__)
        return False


async def _tsa_ready(services: Services) -> bool | None:
    pool = services.extras.get(TSA_POOL)
    if pool is None or not pool.ids():
        return None  # no TSA configured: not a condition of readiness
    return bool(pool.ids(only_valid=True))


async def checks(services: Services) -> dict[str, bool]:
    """Each dependency's state, checked concurrently."""
    db, hsm = await asyncio.gather(_check("database", lambda: services.store.query(_select_one)),
                                   _check("hsm", services.hsm.ping))
    out = {"database": db, "hsm": hsm}
    tsa = await _tsa_ready(services)
    if tsa is not None:
        out["tsa"] = tsa
    return out


async def healthz(_request: web.Request) -> web.Response:
    return web.json_response({"status": "ok"})


async def readyz(request: web.Request) -> web.Response:
    from rssp.api.call import SERVICES

    if request.app[TRAFFIC].stopping:
        return web.json_response({"status": "stopping"}, status=503)
    found = await checks(request.app[SERVICES])
    ready = all(found.values())
    body = {"status": "ready" if ready else "unready", "checks": {k: "ok" if v else "failed" for k, v in found.items()}}
    return web.json_response(body, status=200 if ready else 503)


def setup(app: web.Application) -> None:
    app.router.add_get("/healthz", healthz)
    app.router.add_get("/readyz", readyz)
