"""Revocation data fetched live (OCSP, CRL) and cached across requests until ``nextUpdate``.

pyhanko-certvalidator's fetchers cache per validation context only, so every request would
ask the OCSP responder and download the CRLs again. :class:`RevocationCache` sits between
the validation and the network: an OCSP response (per certificate and issuer) or the CRL set
of a certificate is kept until its ``nextUpdate`` (never longer than the configured maximum;
data without ``nextUpdate`` for the configured default), and concurrent misses for the same
key share one fetch. Failures are never cached: an unreachable responder is asked again by
the next request, which is what ``TRY_LATER`` promises the client.

Each request gets its own :class:`FetchLog` through :meth:`RevocationCache.fetchers`: what
was served (for ``validationInfo`` and ``revocation.source``) and what failed (an
unreachable responder turns an "insufficient revocation data" failure into ``TRY_LATER``).
All of this runs on the validation engine's event loop (one thread), so no locking.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

import aiohttp
from asn1crypto import cms, crl, ocsp, x509
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.errors import CRLFetchError, OCSPFetchError
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import (
    AIOHttpCertificateFetcher,
    AIOHttpCRLFetcher,
    AIOHttpOCSPFetcher,
)
from pyhanko_certvalidator.fetchers.api import CRLFetcher, Fetchers, OCSPFetcher
from pyhanko_certvalidator.util import issuer_serial


@dataclass
class FetchLog:
    """What one validation request got from the cache or the network."""

    ocsp: dict[bytes, ocsp.OCSPResponse] = field(default_factory=dict)  # issuer_serial -> response
    crls: dict[bytes, list[crl.CertificateList]] = field(default_factory=dict)
    failures: list[str] = field(default_factory=list)  # "ocsp" / "crl" per failed fetch

    def source_for(self, cert: x509.Certificate) -> str | None:
        key = issuer_serial(cert)
        if key in self.ocsp:
            return "ocsp"
        if self.crls.get(key):
            return "crl"
        return None


def _ocsp_next_update(resp: ocsp.OCSPResponse) -> datetime | None:
    try:
        basic = resp["response_bytes"]["response"].parsed
        return basic["tbs_response_data"]["responses"][0]["next_update"].native
    except (KeyError, IndexError, TypeError, ValueError):
        return None


def _crl_next_update(crls: list[crl.CertificateList]) -> datetime | None:
    moments = [c["tbs_cert_list"]["next_update"].native for c in crls]
    known = [m for m in moments if m is not None]
    return min(known) if len(known) == len(moments) and known else None


class RevocationCache:
    """OCSP responses and CRLs shared by every validation of one server process."""

    def __init__(self, *, timeout: float, default_seconds: float, max_seconds: float) -> None:
        self.timeout, self.default_seconds, self.max_seconds = timeout, default_seconds, max_seconds
        self._entries: dict[tuple[str, Any], tuple[float, Any]] = {}
        self._inflight: dict[tuple[str, Any], asyncio.Future[Any]] = {}
        self._session: aiohttp.ClientSession | None = None
        self.network_fetches = 0  # for tests and the benchmark: how often the network was asked

    @property
    def session(self) -> aiohttp.ClientSession:
        if self._session is None:
            self._session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=self.timeout))
        return self._session

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None

    def fetchers(self, fetch_log: FetchLog) -> Fetchers:
        return Fetchers(ocsp_fetcher=CachedOCSPFetcher(self, fetch_log), crl_fetcher=CachedCRLFetcher(self, fetch_log),
                        cert_fetcher=AIOHttpCertificateFetcher(self.session, per_request_timeout=self.timeout))

    def _expiry(self, next_update: datetime | None) -> float:
        lifetime = self.default_seconds
        if next_update is not None:
            lifetime = min((next_update - datetime.now(UTC)).total_seconds(), self.max_seconds)
        return time.monotonic() + max(lifetime, 0.0)

    async def get(self, key: tuple[str, Any], fetch: Callable[[], Awaitable[Any]],
                  next_update: Callable[[Any], datetime | None]) -> Any:
        """The cached value for ``key``, or ``fetch()`` once for all concurrent askers."""
        entry = self._entries.get(key)
        if entry is not None and entry[0] > time.monotonic():
            return entry[1]
        pending = self._inflight.get(key)
        if pending is not None:
            return await asyncio.shield(pending)
        future: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        self._inflight[key] = future
        try:
            self.network_fetches += 1
            value = await fetch()
            future.set_result(value)
        except BaseException as exc:
            future.set_exception(exc)
            future.exception()  # retrieved: the waiters re-raise it
            raise
        finally:
            del self._inflight[key]
        self._entries[key] = (self._expiry(next_update(value)), value)
        return value


class CachedOCSPFetcher(OCSPFetcher):
    def __init__(self, cache: RevocationCache, fetch_log: FetchLog) -> None:
        self.cache, self.log = cache, fetch_log

    async def fetch(self, cert: x509.Certificate | cms.AttributeCertificateV2, authority: Authority
                    ) -> ocsp.OCSPResponse:
        key = issuer_serial(cert)

        async def network() -> ocsp.OCSPResponse:
            inner = AIOHttpOCSPFetcher(self.cache.session, per_request_timeout=self.cache.timeout,
                                       request_nonces=False)
            return await inner.fetch(cert, authority)

        try:
            resp = await self.cache.get(("ocsp", (key, authority.hashable)), network, _ocsp_next_update)
        except OCSPFetchError:
            self.log.failures.append("ocsp")
            raise
        self.log.ocsp[key] = resp
        return resp

    def fetched_responses(self) -> Iterable[ocsp.OCSPResponse]:
        return list(self.log.ocsp.values())

    def fetched_responses_for_cert(self, cert: x509.Certificate | cms.AttributeCertificateV2
                                   ) -> Iterable[ocsp.OCSPResponse]:
        resp = self.log.ocsp.get(issuer_serial(cert))
        return [resp] if resp is not None else []


class CachedCRLFetcher(CRLFetcher):
    def __init__(self, cache: RevocationCache, fetch_log: FetchLog) -> None:
        self.cache, self.log = cache, fetch_log

    async def fetch(self, cert: x509.Certificate | cms.AttributeCertificateV2, *, use_deltas: Any = True
                    ) -> Iterable[crl.CertificateList]:
        key = issuer_serial(cert)

        async def network() -> list[crl.CertificateList]:
            inner = AIOHttpCRLFetcher(self.cache.session, per_request_timeout=self.cache.timeout)
            return list(await inner.fetch(cert, use_deltas=use_deltas))

        try:
            crls = await self.cache.get(("crl", key), network, _crl_next_update)
        except CRLFetchError:
            self.log.failures.append("crl")
            raise
        self.log.crls[key] = crls
        return crls

    def fetched_crls(self) -> Iterable[crl.CertificateList]:
        return [c for crls in self.log.crls.values() for c in crls]

    def fetched_crls_for_cert(self, cert: x509.Certificate | cms.AttributeCertificateV2
                              ) -> Iterable[crl.CertificateList]:
        return self.log.crls[issuer_serial(cert)]

