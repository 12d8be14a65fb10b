"""An asynchronous RFC 3161 client over HTTP(S), one instance per configured TSA.

Each TSA gets its own aiohttp session: its TLS settings (private CA file, client
certificate) and HTTP Basic credentials belong to it alone, and keep-alive connections to it
are reused across requests. Redirects are not followed, so credentials are never sent to a
host the operator did not configure. Answers are size-limited and verified completely
(:mod:`tsa_clients.verify`) before :meth:`Rfc3161Client.request` returns them.
"""

from __future__ import annotations

import base64
import ssl
from pathlib import Path
from typing import Any

import aiohttp
from asn1crypto import algos, tsp

from rssp.tsa import VerifiedToken
from tsa_clients.settings import TsaSettings
from tsa_clients.verify import Expectation, TokenVerifier

MAX_RESPONSE_BYTES = 256 * 1024
CONTENT_TYPE = "application/timestamp-query"


class TsaTransportError(Exception):
    """The TSA could not be reached or answered with something other than a TimeStampResp."""


def build_request(digest: bytes, hash_oid: str, nonce: int, policy_oid: str | None = None) -> bytes:
    """A DER TimeStampReq asking for the TSA certificate (certReq) so the token can be verified."""
    fields: dict[str, Any] = {
        "version": "v1",
        "message_imprint": tsp.MessageImprint({
            "hash_algorithm": algos.DigestAlgorithm({"algorithm": hash_oid}),
            "hashed_message": digest,
        }),
        "nonce": nonce,
        "cert_req": True,
    }
    if policy_oid:
        fields["req_policy"] = policy_oid
    return tsp.TimeStampReq(fields).dump()


def basic_auth(user: str, password: str) -> str:
    """An HTTP Basic ``Authorization`` value (RFC 7617, UTF-8)."""
    return "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode("ascii")


def _ssl_context(settings: TsaSettings) -> ssl.SSLContext | None:
    if not settings.url.startswith("https://"):
        return None
    context = ssl.create_default_context(cafile=str(settings.ca_file) if settings.ca_file else None)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    if settings.client_cert is not None:
        context.load_cert_chain(str(settings.client_cert), str(settings.client_key) if settings.client_key else None,
                                password=settings.client_key_password)
    return context


class Rfc3161Client:
    """The built-in ``rfc3161`` TSA client (entry point ``rssp.tsa_clients``)."""

    def __init__(self, settings: TsaSettings, table: dict[str, Any] | None = None, directory: Path | None = None
                 ) -> None:
        self.settings = settings
        self.verifier = TokenVerifier(settings.anchors, settings.intermediates, revocation=settings.revocation,
                                      chain_cache_seconds=settings.chain_cache_seconds)
        self._headers = {"Content-Type": CONTENT_TYPE}
        if settings.username:
            self._headers["Authorization"] = basic_auth(settings.username, settings.password or "")
        self._ssl = _ssl_context(settings)  # built now: a bad key file fails at start-up, not on a request
        self._session: aiohttp.ClientSession | None = None

    async def start(self) -> None:
        connector = aiohttp.TCPConnector(limit=self.settings.max_connections, ssl=self._ssl or True)
        timeout = aiohttp.ClientTimeout(total=self.settings.timeout_seconds,
                                        sock_connect=self.settings.connect_timeout_seconds)
        self._session = aiohttp.ClientSession(connector=connector, timeout=timeout)

    async def close(self) -> None:
        if self._session is not None:
            await self._session.close()
            self._session = None
        await self.verifier.close()

    async def request(self, digest: bytes, hash_oid: str, nonce: int) -> VerifiedToken:
        s = self.settings
        body = build_request(digest, hash_oid, nonce, s.policy_oid if s.request_policy else None)
        answer = await self._post(body)
        want = Expectation(digest, hash_oid, nonce, s.policy_oid, s.max_clock_skew_seconds)
        return await self.verifier.verify(answer, want)

    async def _post(self, body: bytes) -> bytes:
        if self._session is None:
            await self.start()
        session = self._session
        if session is None:  # start() made it
            raise RuntimeError("the TSA client has no HTTP session")
        try:
            async with session.post(self.settings.url, data=body, headers=self._headers,
                                          allow_redirects=False) as resp:
                if resp.status != 200:
                    raise TsaTransportError(f"HTTP {resp.status}")
                if resp.content_length is not None and resp.content_length > MAX_RESPONSE_BYTES:
                    raise TsaTransportError("answer too large")
                return await _read_limited(resp)
        except (aiohttp.ClientError, TimeoutError, OSError) as exc:
            raise TsaTransportError(f"{type(exc).__name__}: {exc}") from None


async def _read_limited(resp: aiohttp.ClientResponse) -> bytes:
    """The whole body, refusing more than MAX_RESPONSE_BYTES (a TSA cannot make us buffer more)."""
    data = bytearray()
    while chunk := await resp.content.read(64 * 1024):
        data += chunk
        if len(data) > MAX_RESPONSE_BYTES:
            raise TsaTransportError("answer too large")
    return bytes(data)
