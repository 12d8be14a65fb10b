"""The fetchers rssp hands pyhanko-certvalidator: OCSP, CRLs and caIssuers certificates.

They replace the library's aiohttp fetchers (which follow redirects anywhere, read whole
answers and know no per-request budget) with the same protocol work over
:class:`~.outbound.Outbound`, so every fetch a validation makes — whoever in pyHanko asks
for it — passes the operator's :class:`~.fetchpolicy.FetchPolicy` and the request's
:class:`~.outbound.FetchBudget`. The library's own helpers still build the OCSP request,
check the answer and unpack certificates, so the protocol behaviour is unchanged.

OCSP responses and CRLs go through the process-wide :class:`~.revocation.RevocationCache`.
caIssuers certificates are fetched per request only: each URL once (a cycle cannot fetch
again), at most ``max_issuer_depth`` certificates above one the caller sent, at most
:data:`MAX_URLS` URLs per certificate, CRL or distribution point list.

A refused fetch is logged (the URL, so the operator knows what to allow) and reported to
pyHanko as its usual fetch error, so the answer is an indication (no path:
``NO_CERTIFICATE_CHAIN_FOUND``; no revocation data: a chain failure), never a 500. Only a
source that did not answer is recorded as a failure (``TRY_LATER``). An OCSP fetch that fails
or is refused falls back on a response about that certificate the document or the request
carries (pyhanko-certvalidator would otherwise never look at them: see ``_carried``), so a
signature carrying its own revocation data validates offline or with its responder down.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncGenerator, Awaitable, Callable, Iterable
from typing import Any, TypeAlias, TypeVar

from asn1crypto import cms, crl, ocsp, x509
from pyhanko_certvalidator.authority import Authority
from pyhanko_certvalidator.errors import CertificateFetchError, CRLFetchError, OCSPFetchError, OCSPValidationError
from pyhanko_certvalidator.fetchers.api import CertificateFetcher, CRLFetcher, Fetchers, OCSPFetcher
from pyhanko_certvalidator.fetchers.common_utils import (
    ACCEPTABLE_CERT_DER_ALIASES,
    ACCEPTABLE_CERT_PEM_ALIASES,
    ACCEPTABLE_PKCS7_DER_ALIASES,
    ACCEPTABLE_STRICT_CERT_CONTENT_TYPES,
    complete_certificate_fetch_jobs,
    enumerate_delivery_point_urls,
    format_ocsp_request,
    gather_aia_issuer_urls,
    process_ocsp_response_data,
    unpack_cert_content,
)
from pyhanko_certvalidator.util import get_ocsp_urls, get_relevant_crl_dps, issuer_serial

from extensions.validates.fetchpolicy import FetchRefused
from extensions.validates.outbound import FetchFailed, Outbound
from extensions.validates.revocation import FetchLog, RevocationCache, crl_next_update, ocsp_next_update

log = logging.getLogger("extensions.validates")

MAX_URLS = 4
CERT_TYPES = ",".join(sorted(ACCEPTABLE_STRICT_CERT_CONTENT_TYPES | ACCEPTABLE_CERT_PEM_ALIASES
                             | ACCEPTABLE_CERT_DER_ALIASES | ACCEPTABLE_PKCS7_DER_ALIASES))
Cert: TypeAlias = x509.Certificate | cms.AttributeCertificateV2
T = TypeVar("T")


# what a fetch failing (or refused) looks like when it escapes a pyHanko process
FETCH_ERRORS = (OCSPFetchError, CRLFetchError, CertificateFetchError, FetchFailed, FetchRefused)


def _refused(kind: str, url: str, exc: Exception) -> None:
    log.info("validation: %s fetch from %r refused: %s", kind, url[:300], exc)


async def first_answer(kind: str, urls: list[str], one: Callable[[str], Awaitable[T]]) -> T:
    """The first URL that answers: :class:`FetchFailed` if a source was asked and none answered
    (asking later may help), :class:`FetchRefused` if none could be asked."""
    failed = False
    for url in urls[:MAX_URLS]:
        try:
            return await one(url)
        except FetchRefused as exc:
            _refused(kind, url, exc)
        except FetchFailed:
            failed = True
    raise FetchFailed(f"no {kind} source answered") if failed else FetchRefused(f"no {kind} source may be fetched")


def _serials(resp: ocsp.OCSPResponse) -> set[int]:
    """The certificate serial numbers an OCSP response speaks about (none if it cannot be read)."""
    try:
        return {single["cert_id"]["serial_number"].native
                for single in resp.basic_ocsp_response["tbs_response_data"]["responses"]}
    except (KeyError, TypeError, ValueError, AttributeError):
        return set()


class PolicyOCSPFetcher(OCSPFetcher):
    def __init__(self, net: Outbound, cache: RevocationCache, fetch_log: FetchLog) -> None:
        self.net, self.cache, self.log = net, cache, fetch_log

    async def _ask(self, url: str, request: ocsp.OCSPRequest) -> ocsp.OCSPResponse:
        answer = await self.net.post(url, self.log.budget, request.dump(), "application/ocsp-request",
                                     "application/ocsp-response")
        try:
            return process_ocsp_response_data(answer.body, ocsp_request=request, ocsp_url=url)
        except (OCSPFetchError, OCSPValidationError, ValueError):
            raise FetchFailed("unusable OCSP answer") from None

    async def fetch(self, cert: Cert, authority: Authority) -> ocsp.OCSPResponse:
        key = issuer_serial(cert)

        async def network() -> ocsp.OCSPResponse:
            request = format_ocsp_request(cert, authority, certid_hash_algo="sha1", request_nonces=False)
            return await first_answer("ocsp", get_ocsp_urls(cert), lambda url: self._ask(url, request))

        try:
            resp = await self.cache.get(("ocsp", (key, authority.hashable)), network, ocsp_next_update)
        except FetchFailed as exc:
            self.log.failures.append("ocsp")
            return self._carried(cert, exc)
        except FetchRefused as exc:
            return self._carried(cert, exc)
        self.log.ocsp[key] = resp
        return resp

    def _carried(self, cert: Cert, exc: Exception) -> ocsp.OCSPResponse:
        """A response about ``cert`` that the document or the request carries, when no fetch answered.

        pyhanko-certvalidator asks the fetcher first and, when the fetch raises, never looks at
        the OCSP responses it was given (the DSS, the CMS, a validCert request's
        ``ocspResponses``): a signature carrying its own revocation data would fail for want of
        a responder. Handing one back makes certvalidator check it like any response (signature,
        responder, freshness); the failed fetch still counts for ``TRY_LATER``.
        """
        serial = cert.serial_number if isinstance(cert, x509.Certificate) else None
        for resp in self.log.carried_ocsps:
            if serial is not None and serial in _serials(resp):
                return resp
        raise OCSPFetchError(str(exc)) from None

    def fetched_responses(self) -> Iterable[ocsp.OCSPResponse]:
        return list(self.log.ocsp.values())

    def fetched_responses_for_cert(self, cert: Cert) -> Iterable[ocsp.OCSPResponse]:
        resp = self.log.ocsp.get(issuer_serial(cert))
        return [resp] if resp is not None else []


class PolicyCRLFetcher(CRLFetcher):
    def __init__(self, net: Outbound, cache: RevocationCache, fetch_log: FetchLog) -> None:
        self.net, self.cache, self.log = net, cache, fetch_log

    async def _download(self, url: str) -> crl.CertificateList:
        answer = await self.net.get(url, self.log.budget, "application/pkix-crl")
        try:
            value = crl.CertificateList.load(answer.body)
            crl_next_update(value)  # the header parses; entries are read lazily, as pyHanko does
        except (ValueError, TypeError, KeyError):
            raise FetchFailed("not a CRL") from None
        return value

    async def _one(self, url: str) -> crl.CertificateList:
        return await self.cache.get(("crl", url), lambda: self._download(url), crl_next_update)

    async def fetch(self, cert: Cert, *, use_deltas: Any = True) -> Iterable[crl.CertificateList]:
        urls = [url for point in get_relevant_crl_dps(cert, use_deltas=use_deltas)
                for url in enumerate_delivery_point_urls(point)]
        found: list[crl.CertificateList] = []
        for url in urls[:MAX_URLS]:  # every distribution point counts (full and delta CRLs)
            try:
                found.append(await first_answer("crl", [url], self._one))
            except FetchFailed:
                self.log.failures.append("crl")
            except FetchRefused:
                continue
        if not found:
            raise CRLFetchError("no CRL could be fetched")
        self.log.crls[issuer_serial(cert)] = found
        return found

    def fetched_crls(self) -> Iterable[crl.CertificateList]:
        return [c for crls in self.log.crls.values() for c in crls]

    def fetched_crls_for_cert(self, cert: Cert) -> Iterable[crl.CertificateList]:
        return self.log.crls[issuer_serial(cert)]  # KeyError: not fetched yet (certvalidator then fetches)


class PolicyCertificateFetcher(CertificateFetcher):
    """caIssuers for path building: each URL once per request, a bounded depth above what was sent."""

    def __init__(self, net: Outbound, fetch_log: FetchLog, max_depth: int) -> None:
        self.net, self.log, self.max_depth = net, fetch_log, max_depth
        self._by_url: dict[str, asyncio.Future[list[x509.Certificate]]] = {}
        self._depth: dict[bytes, int] = {}  # fetched certificate (sha256) -> how far above a sent one

    async def _download(self, url: str) -> list[x509.Certificate]:
        answer = await self.net.get(url, self.log.budget, CERT_TYPES)
        content_type = answer.content_type.split(";")[0].strip() if answer.content_type else None
        return list(unpack_cert_content(answer.body, content_type, url, True))

    async def fetch_certs(self, url: str, url_origin_type: str) -> list[x509.Certificate]:
        pending = self._by_url.get(url)
        if pending is None:
            pending = self._by_url[url] = asyncio.ensure_future(self._download(url))
        try:
            return await asyncio.shield(pending)
        except FetchRefused as exc:
            _refused(f"{url_origin_type} issuer", url, exc)
            raise CertificateFetchError("refused") from None
        except (FetchFailed, ValueError):
            raise CertificateFetchError("failed") from None

    async def _issuers(self, urls: list[str], origin: str, depth: int) -> AsyncGenerator[x509.Certificate, None]:
        if depth > self.max_depth:
            log.info("validation: caIssuers chain deeper than [validation] max_issuer_depth, not followed")
            return
        jobs = [self.fetch_certs(url, origin) for url in urls[:MAX_URLS]]
        async for cert in complete_certificate_fetch_jobs(jobs):
            self._depth.setdefault(cert.sha256, depth)
            yield cert

    def fetch_cert_issuers(self, cert: Cert) -> AsyncGenerator[x509.Certificate, None]:
        depth = self._depth.get(cert.sha256, 0) + 1 if isinstance(cert, x509.Certificate) else 1
        return self._issuers(list(gather_aia_issuer_urls(cert)), "certificate", depth)

    def fetch_crl_issuers(self, certificate_list: crl.CertificateList) -> AsyncGenerator[x509.Certificate, None]:
        return self._issuers(list(certificate_list.issuer_cert_urls), "CRL", 1)

    def fetched_certs(self) -> Iterable[x509.Certificate]:
        done = [job for job in self._by_url.values() if job.done() and not job.cancelled()]
        return [c for job in done if job.exception() is None for c in job.result()]


def policy_fetchers(net: Outbound, cache: RevocationCache, fetch_log: FetchLog, max_depth: int) -> Fetchers:
    return Fetchers(ocsp_fetcher=PolicyOCSPFetcher(net, cache, fetch_log),
                    crl_fetcher=PolicyCRLFetcher(net, cache, fetch_log),
                    cert_fetcher=PolicyCertificateFetcher(net, fetch_log, max_depth))
