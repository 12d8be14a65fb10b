"""Revocation data fetched live (OCSP, CRL), cached across requests until ``nextUpdate``.

pyhanko-certvalidator's fetchers cache per validation context only, so every request would
ask the OCSP responder and download the CRLs again. :class:`RevocationCache` sits between
the validation and the network (:mod:`.fetchers`): an OCSP response (per certificate and
issuer) or a CRL (per URL) is kept until its ``nextUpdate`` (never longer than the
configured maximum; data without ``nextUpdate`` for the configured default), at most
``revocation_cache_entries`` of them (the least recently used go first), and concurrent
misses for the same key share one fetch, whichever validation thread asks. Failures are
never cached: an unreachable responder is asked again by the next request, which is what
``TRY_LATER`` promises the client.

Each request gets its own :class:`FetchLog`: what was served (for ``validationInfo`` and
``revocation.source``), what failed (an unreachable responder turns an "insufficient
revocation data" failure into ``TRY_LATER``), the OCSP responses the document or the
request carries (:mod:`.fetchers` falls back on them), and its :class:`~.outbound.FetchBudget`.
The cache is shared by the validation threads of one process (:mod:`.engine`); the sharing of
fetches and its thread safety are :class:`rssp.singleflight.SingleFlightCache`'s.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from asn1crypto import crl, x509
from asn1crypto.ocsp import OCSPResponse  # by name: FetchLog.ocsp would hide the module in its class body
from pyhanko_certvalidator.util import issuer_serial

from extensions.validates.outbound import FetchBudget, FetchFailed
from rssp import metrics
from rssp.singleflight import SingleFlightCache


@dataclass
class FetchLog:
    """What one validation request got from the cache or the network, and what it may still fetch."""

    budget: FetchBudget
    ocsp: dict[bytes, OCSPResponse] = field(default_factory=dict)  # issuer_serial -> response
    crls: dict[bytes, list[crl.CertificateList]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "ocsp" / "crl" per source that did not answer
    # OCSP responses the document or the request carries: what a failed or refused fetch falls back on
    carried_ocsps: list[OCSPResponse] = field(default_factory=list)

    def source_for(self, cert: x509.Certificate) -> str | None:
        key = issuer_serial(cert)
        if key in self.ocsp:
            return "ocsp"
        if self.crls.get(key):
            return "crl"
        return None


def ocsp_next_update(resp: OCSPResponse) -> datetime | None:
    try:
        basic = resp["response_bytes"]["response"].parsed
        return basic["tbs_response_data"]["responses"][0]["next_update"].native
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def crl_next_update(value: crl.CertificateList) -> datetime | None:
    return value["tbs_cert_list"]["next_update"].native


class RevocationCache:
    """OCSP responses and CRLs shared by every validation of one server process."""

    def __init__(self, *, default_seconds: float, max_seconds: float, max_entries: int) -> None:
        self.default_seconds, self.max_seconds, self.max_entries = default_seconds, max_seconds, max_entries
        # the others get a fetch failure of their own, never one request's cancellation
        self._flights: SingleFlightCache[tuple[str, Any], Any] = SingleFlightCache(
            max_entries=max_entries, abandoned=lambda: FetchFailed("fetch abandoned"))

    @property
    def network_fetches(self) -> int:
        """How often the network was asked (tests and the benchmark)."""
        return self._flights.fetches

    def _expiry(self, next_update: datetime | None) -> float:
        lifetime = self.default_seconds
        if next_update is not None:
            lifetime = min((next_update - datetime.now(UTC)).total_seconds(), self.max_seconds)
        return time.monotonic() + max(lifetime, 0.0)

    async def get(self, key: tuple[str, Any], fetch: Callable[[], Awaitable[Any]],
                  next_update: Callable[[Any], datetime | None]) -> Any:
        """The cached value for ``key``, or ``fetch()`` once for all concurrent askers."""
        counted = metrics.m()

        def observe(mine: bool) -> None:
            counted.revocation_cache.labels(key[0], "miss" if mine else "hit").inc()

        async def fetch_counted() -> Any:
            try:
                value = await fetch()
            except BaseException:
                counted.revocation_fetches.labels(key[0], "failed").inc()
                raise
            counted.revocation_fetches.labels(key[0], "ok").inc()
            return value

        return await self._flights.get(key, fetch_counted, lambda value: self._expiry(next_update(value)), observe)
