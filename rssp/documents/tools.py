"""pyHanko's signing objects over rssp's own parts: the SAM's HSM signature and the TSA pool.

The document engines only know pyHanko's ``Signer``, ``TimeStamper`` and ``ValidationContext``
(:class:`~rssp.documents.model.SigningTools`). Here those are made to use what rssp already
has, so a signed document goes through the same SAM checks, HSM queue, signature check and
verified-timestamp pool as ``signHash`` and ``signatures/timestamp``. Engines run on the
documents thread's loop (:mod:`rssp.loop_thread`); the HSM and the pool live on the server's
loop, so each call is handed across with :meth:`LoopThread.on_main`.
"""

from __future__ import annotations

import hashlib
import ssl
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import certifi
from asn1crypto import algos, cms, x509
from pyhanko.sign.signers import Signer
from pyhanko.sign.timestamps import TimeStamper
from pyhanko.sign.timestamps.common_utils import extract_ts_certs
from pyhanko_certvalidator import ValidationContext
from pyhanko_certvalidator.fetchers.api import FetchLimits
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend
from pyhanko_certvalidator.fetchers.aiohttp_fetchers.util import LazySession
from pyhanko_certvalidator.policy_decl import LEGACY_POLICY_MAP, CertRevTrustPolicy
from pyhanko_certvalidator.registry import SimpleCertificateStore

from rssp import metrics
from rssp.algorithms import HASH_OID_BY_NAME
from rssp.documents.model import UpstreamUnavailable
from rssp.hsm import SignMechanism
from rssp.loop_thread import LoopThread
from rssp.tsa import TimestampAuthority, TimestampError, TimestampRequest

# Bounds on what one signature's revocation fetching may do: the chain is the operator's own.
FETCH_LIMITS = FetchLimits(max_requests=40, max_cert_requests=10)
_ECDSA_MAX_DER = {256: 72, 384: 104, 521: 139}  # SEQUENCE of two INTEGERs, each with a sign byte


def signed_digest_algorithm(mechanism: SignMechanism, params_der: bytes | None) -> algos.SignedDigestAlgorithm:
    """The CMS signatureAlgorithm for an HSM mechanism (PSS carries the request's own parameters)."""
    if mechanism.scheme == "pss":
        return algos.SignedDigestAlgorithm({"algorithm": "rsassa_pss",
                                            "parameters": algos.RSASSAPSSParams.load(params_der or b"")})
    suffix = "rsa" if mechanism.scheme == "pkcs1v15" else "ecdsa"
    return algos.SignedDigestAlgorithm({"algorithm": f"{mechanism.hash}_{suffix}"})


class HsmSigner(Signer):
    """A pyHanko ``Signer`` whose one raw signature comes from ``sign`` (the SAM's permit).

    ``dry_run`` (pyHanko sizing the PDF signature placeholder) costs no HSM call: it gets zero
    bytes of the largest length a signature of this key can have.
    """

    def __init__(self, cert: x509.Certificate, chain: list[x509.Certificate], mechanism: algos.SignedDigestAlgorithm,
                 sign: Callable[[bytes], Awaitable[bytes]], key_bits: int, key_kind: str) -> None:
        super().__init__(signature_mechanism=mechanism, signing_cert=cert,
                         cert_registry=SimpleCertificateStore.from_certs(chain), embed_roots=True)
        self._sign = sign
        self._max_len = _ECDSA_MAX_DER.get(key_bits, 139) if key_kind == "ec" else (key_bits + 7) // 8

    async def async_sign_raw(self, data: bytes, digest_algorithm: str, dry_run: bool = False) -> bytes:
        if dry_run:
            return bytes(self._max_len)
        return await self._sign(hashlib.new(digest_algorithm, data).digest())


class PoolTimeStamper(TimeStamper):
    """A pyHanko ``TimeStamper`` answered by rssp's TSA pool (every token verified by the pool).

    All timestamps of one document come from one TSA: the first answer pins it, so that the
    TSA certificates pyHanko collects for B-LT (``validation_paths``) are the ones used.
    Size estimates reuse a token already obtained (class-wide cache): pyHanko only needs its
    size and certificates, so estimating costs no TSA round trip once a TSA has answered.
    """

    _dummies: dict[tuple[str | None, str], cms.ContentInfo] = {}

    def __init__(self, pool: TimestampAuthority, loop: LoopThread, timestamp_id: str | None) -> None:
        super().__init__(include_nonce=False)  # type: ignore[no-untyped-call]  # pyHanko's; the pool sends its own nonce
        self._pool = pool
        self._loop = loop
        self._pinned = timestamp_id

    async def async_dummy_response(self, md_algorithm: str) -> cms.ContentInfo:
        cached = self._dummies.get((self._pinned, md_algorithm))
        if cached is None:
            return await super().async_dummy_response(md_algorithm)
        self._register_dummy(md_algorithm, cached)  # type: ignore[no-untyped-call]  # pyHanko's, unannotated
        return cached

    async def async_timestamp(self, message_digest: bytes, md_algorithm: str) -> cms.ContentInfo:
        request = TimestampRequest(message_digest, HASH_OID_BY_NAME[md_algorithm], None, self._pinned)  # type: ignore[index]
        try:
            stamped = await self._loop.on_main(self._pool.timestamp(request))
        except TimestampError as exc:
            raise UpstreamUnavailable("no TSA could timestamp the signature") from exc
        token = cms.ContentInfo.load(stamped.token.token)
        self._pinned = stamped.timestamp_id
        for der in stamped.token.chain:
            self.cert_registry.register(x509.Certificate.load(der))
        for cert in extract_ts_certs(token, self.cert_registry):
            self._certs[cert.issuer_serial] = cert
        self._dummies.setdefault((None, md_algorithm), token)
        self._dummies.setdefault((stamped.timestamp_id, md_algorithm), token)
        return token


async def tsa_anchors(pool: TimestampAuthority | None) -> list[x509.Certificate]:
    """The root of each configured TSA's chain, so B-LT can validate (and embed) TSA paths.

    A TSA's chain is known only from a token it sent: a worker that has none yet (its start-up
    probe still out) waits for that probe or takes one (:meth:`TimestampAuthority.described`).
    Read without waiting, a B-LT signature in the first moments of a worker found no root for
    the TSA's path and answered 503.
    """
    if pool is None:
        return []
    roots = []
    for tsa_id in pool.ids():
        chain = (await pool.described(tsa_id)).chain
        if chain:
            roots.append(x509.Certificate.load(chain[-1]))
    return roots


def validation_context_factory(chain: list[x509.Certificate], extra_roots: list[x509.Certificate],
                               backend: AIOHttpFetcherBackend) -> Callable[[], ValidationContext]:
    """Fresh contexts for B-LT/B-LTA: the root of the signer's chain and ``extra_roots`` (the CAs'
    anchors, the TSAs' roots) trusted, live fetching.

    Revocation is hard-fail where a certificate declares it: a responder that cannot be reached
    stops the signature (503) rather than yield a B-LT document without its revocation data.
    """
    roots = [c for c in chain if c.subject == c.issuer] + extra_roots
    policy = CertRevTrustPolicy(LEGACY_POLICY_MAP["hard-fail"])

    def make() -> ValidationContext:
        return ValidationContext(trust_roots=roots, other_certs=chain, allow_fetching=True, fetcher_backend=backend,
                                 revinfo_policy=policy)

    return make


def fetcher_backend(timeout_seconds: float) -> AIOHttpFetcherBackend:
    """The documents thread's one HTTP backend for OCSP, CRL and certificate fetches."""
    return AIOHttpFetcherBackend(CountedSession(), per_request_timeout=timeout_seconds,  # type: ignore[arg-type]
                                 limits=FETCH_LIMITS)


class CountedSession(LazySession):
    """pyHanko's lazily made aiohttp session, each OCSP and CRL request counted in
    ``rssp_revocation_fetches_total`` (by kind and outcome), as validSign's fetches are.

    The requests are told apart as pyHanko makes them: an OCSP request is a POST of
    ``application/ocsp-request``, a CRL request asks for ``application/pkix-crl``. A request is
    ``failed`` when it raised (no answer, a timeout, an HTTP error status), else ``ok``.
    """

    def __init__(self) -> None:
        super().__init__()  # type: ignore[no-untyped-call]  # pyHanko's, unannotated
        self._counted: aiohttp.ClientSession | None = None

    def get_session(self) -> aiohttp.ClientSession:
        if self._counted is None:  # made on the documents thread's loop, at its first fetch
            connector = aiohttp.TCPConnector(ssl=ssl.create_default_context(cafile=certifi.where()))
            self._counted = aiohttp.ClientSession(connector=connector, trace_configs=[_counting()])
        return self._counted

    async def close(self) -> None:
        session, self._counted = self._counted, None
        if session is not None:
            await session.close()


def _kind(headers: Any) -> str | None:
    if headers.get("Content-Type") == "application/ocsp-request":
        return "ocsp"
    if headers.get("Accept") == "application/pkix-crl":
        return "crl"
    return None  # a certificate fetch (AIA caIssuers)


def _counting() -> aiohttp.TraceConfig:
    async def answered(_session: object, _ctx: object, params: aiohttp.TraceRequestEndParams) -> None:
        if kind := _kind(params.headers):
            metrics.m().revocation_fetches.labels(kind, "ok").inc()

    async def failed(_session: object, _ctx: object, params: aiohttp.TraceRequestExceptionParams) -> None:
        if kind := _kind(params.headers):
            metrics.m().revocation_fetches.labels(kind, "failed").inc()

    trace = aiohttp.TraceConfig()
    trace.on_request_end.append(answered)
    trace.on_request_exception.append(failed)
    return trace
