"""JT2A "Validation" (DESIGN §3.2): ``validates/validSign`` and ``validates/validCert``.

``setup`` reads the ``[validation]`` table of rssp.toml (:mod:`.settings`: trust anchors,
TSA anchors, the anchors of the configured CAs, what may be fetched, size and work limits,
revocation cache), starts the validation engine (:mod:`.engine`: validation threads, each
with its own event loop, behind :mod:`.gate`; the revocation cache shared by every request
of the process) for the life of the app, and registers both methods. The modules, one
concept each: :mod:`.policy` (what valid means here), :mod:`.fetchpolicy` (which URLs may
be fetched), :mod:`.outbound` (the HTTP client every fetch goes through), :mod:`.fetchers`
(OCSP, CRL and caIssuers for pyhanko-certvalidator), :mod:`.revocation` (the cache),
:mod:`.certs` (validCert), :mod:`.pades` and :mod:`.cades` (validSign), :mod:`.processes`
(the EN 319 102-1 process for a signature), :mod:`.cmsread` (what a CMS carries, one signer's
view), :mod:`.countersign` (counter-signatures), :mod:`.archive` (CAdES archive time-stamps),
:mod:`.algorithms` (what asn1crypto is taught), :mod:`.pdfhistory` (PDF revision history
index, difference analysis once per pair), :mod:`.indications` (EN 319 102-1), :mod:`.outcome`
(answer shape), :mod:`.report` (TS 119 102-2 XML), :mod:`.handlers` (request parsing).
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator

from aiohttp import web

from extensions.validates import handlers, schemas
from extensions.validates.engine import ValidationEngine
from extensions.validates.settings import load_settings
from rssp.api.registry import Method, Registry
from rssp.services import Services

log = logging.getLogger("extensions.validates")


def setup(app: web.Application, registry: Registry, services: Services) -> None:
    settings = load_settings(services.config)
    if not settings.trust_anchors:
        log.warning("[validation] has no trust anchor: every signature will be NO_CERTIFICATE_CHAIN_FOUND")
    engine = ValidationEngine(settings)
    services.extras[handlers.ENGINE] = engine
    # pyHanko logs every validation problem with a traceback at WARNING: the answer carries it
    for noisy in ("pyhanko.sign.validation", "pyhanko_certvalidator", "pyhanko.pdf_utils"):
        logging.getLogger(noisy).setLevel(logging.ERROR)

    async def engine_ctx(_app: web.Application) -> AsyncIterator[None]:
        engine.start()
        yield
        await engine.close()

    app.cleanup_ctx.append(engine_ctx)
    registry.add(Method("validates/validSign", handlers.valid_sign, doc=schemas.VALID_SIGN))
    registry.add(Method("validates/validCert", handlers.valid_cert, doc=schemas.VALID_CERT))
