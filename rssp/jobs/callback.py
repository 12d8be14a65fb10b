"""``response_uri``: telling the client that an asynchronous job is finished, without SSRF.

A client names the URI; the server then makes a request to it from inside the operator's
network. So the URI is accepted only for hosts the operator listed in ``[async]
response_uri_hosts`` (checked at request time: a refused URI refuses the whole call, before
anything is spent), only over https unless plain http is allowed, and the connection goes
only to addresses that are public, or that the operator named explicitly (an IP literal in
the host list, or a network in ``response_uri_private_networks``): a listed name that
resolves to a loopback or private address (DNS rebinding) is not connected to. Addresses are
checked in the resolver, so what is checked is what is connected to. No proxy from the
environment, no redirects, a timeout per attempt and a bounded number of attempts.

The notification is ``POST response_uri`` with ``{"responseID": …}``: the result itself is
fetched with ``signatures/signPolling``, which authenticates the caller.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from dataclasses import dataclass

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import DefaultResolver
from yarl import URL

from rssp.errors import invalid_param

log = logging.getLogger("rssp.jobs")

IpAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IpNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network
_MAX_URI = 2048
_DEFAULT_PORTS = {"https": 443, "http": 80}


def _ip(host: str) -> IpAddress | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


def _host_entry(entry: str) -> tuple[str, int | None]:
    """``host``, ``host:port``, ``[v6]`` or ``[v6]:port`` as (lower-case host, port or None)."""
    url = URL(f"//{entry.strip()}")
    if not url.host or url.path not in ("", "/") or url.user or url.query_string:
        raise ValueError(f"[async] response_uri_hosts: {entry!r} is not a host or host:port")
    return url.host.lower(), url.explicit_port


@dataclass(frozen=True)
class CallbackPolicy:
    """Where a ``response_uri`` may point (from ``[async]``)."""

    hosts: frozenset[tuple[str, int | None]]
    allow_http: bool
    networks: tuple[IpNetwork, ...]
    literals: frozenset[IpAddress]

    @classmethod
    def parse(cls, hosts: tuple[str, ...], allow_http: bool, networks: tuple[str, ...]) -> CallbackPolicy:
        """Raises ValueError for an entry that is not a host, ``host:port`` or CIDR network."""
        entries = frozenset(_host_entry(h) for h in hosts)
        literals = frozenset(ip for ip in (_ip(h) for h, _ in entries) if ip is not None)
        return cls(entries, allow_http, tuple(ipaddress.ip_network(n) for n in networks), literals)

    def check_uri(self, value: str) -> str:
        """The URI if a job may notify it, else ``400 "Invalid parameter response_uri"``."""
        try:
            url = URL(value)
        except (ValueError, TypeError):
            raise invalid_param("response_uri") from None
        schemes = ("https", "http") if self.allow_http else ("https",)
        if (len(value) > _MAX_URI or url.scheme not in schemes or not url.host or url.user is not None
                or url.password is not None or url.fragment):
            raise invalid_param("response_uri")
        host, port = url.host.lower(), url.port
        if (host, port) not in self.hosts and not (port == _DEFAULT_PORTS[url.scheme] and (host, None) in self.hosts):
            raise invalid_param("response_uri")
        return value

    def address_allowed(self, address: IpAddress) -> bool:
        """A public unicast address, or one the operator named."""
        if address in self.literals or any(address in net for net in self.networks):
            return True
        return address.is_global and not address.is_multicast


class _PolicyResolver(AbstractResolver):
    """The system resolver, keeping only the addresses the policy allows."""

    def __init__(self, policy: CallbackPolicy) -> None:
        self._policy = policy
        self._inner = DefaultResolver()

    async def resolve(self, host: str, port: int = 0,
                      family: socket.AddressFamily = socket.AF_INET) -> list[ResolveResult]:
        found = await self._inner.resolve(host, port, family)
        allowed = [r for r in found if self._policy.address_allowed(ipaddress.ip_address(r["host"]))]
        if not allowed:
            raise OSError(f"no address of {host} may be notified")
        return allowed

    async def close(self) -> None:
        await self._inner.close()


@dataclass(frozen=True)
class Delivery:
    """How a notification ended: delivered or not, after how many attempts, the last HTTP status."""

    delivered: bool
    attempts: int
    status: int | None


def _retryable(status: int) -> bool:
    return status >= 500 or status == 429


async def notify(uri: str, response_id: str, policy: CallbackPolicy, *, attempt_timeout: float, attempts: int,
                 backoff: float) -> Delivery:
    """POST ``{"responseID"}`` to ``uri`` until a 2xx, a final refusal, or ``attempts`` tries.

    A network error, a timeout, a 5xx or a 429 is tried again after ``backoff`` seconds,
    doubling each time; any other status (a redirect included: never followed) ends it.
    """
    policy.check_uri(uri)  # the configuration may have changed since the request
    resolver = _PolicyResolver(policy)
    try:
        return await _attempts(uri, response_id, resolver, attempt_timeout=attempt_timeout, attempts=attempts,
                               backoff=backoff)
    finally:
        await resolver.close()  # the connector closes only a resolver it made itself


async def _attempts(uri: str, response_id: str, resolver: AbstractResolver, *, attempt_timeout: float, attempts: int,
                    backoff: float) -> Delivery:
    connector = aiohttp.TCPConnector(resolver=resolver, use_dns_cache=False, limit=1)
    status: int | None = None
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=attempt_timeout),
                                     trust_env=False) as session:
        for attempt in range(1, attempts + 1):
            try:
                async with session.post(uri, json={"responseID": response_id}, allow_redirects=False) as resp:
                    status = resp.status
            except (aiohttp.ClientError, TimeoutError, OSError) as exc:
                log.info("job %s: notification attempt %d failed (%s)", response_id, attempt, type(exc).__name__)
                status = None
            if status is not None and 200 <= status < 300:
                return Delivery(True, attempt, status)
            if status is not None and not _retryable(status):
                return Delivery(False, attempt, status)
            if attempt < attempts:
                await asyncio.sleep(backoff * 2 ** (attempt - 1))
    return Delivery(False, attempts, status)
