"""Which URLs a validation may fetch on a caller's behalf.

Every URL a validation fetches is named by what a caller sent: a caIssuers URL in a
certificate it submits (read before anything is trusted), the OCSP and CRL URLs of the
certificates on its path, the URLs a fetched CRL names. Left open, any service token turns
rssp into a client of the operator's network (loopback services, private hosts, a port
scanner). So nothing is fetched unless the operator allowed it:

- the URL starts with an allowed prefix: ``[validation] fetch_allow``, plus the defaults
  (:func:`~.settings.default_fetch_urls`: the URLs the anchors declare, and a development
  instance's test PKI); a prefix is matched on scheme, host, port and whole path segments,
  so ``http://ca.example/ocsp`` allows neither ``http://ca.example.evil/...`` nor
  ``http://ca.example/ocsp-admin``;
- or ``fetch_allow_public = true``, and then only public (global unicast) addresses are
  connected to: checked on the URL for an IP literal and by :class:`PolicyResolver` on what
  DNS answers, at connection time, so a DNS answer cannot bring 127.0.0.1 back.

A host named by an allowed prefix may be on any address: the operator named it (the dev
test PKI listens on loopback). Only ``http`` and ``https``; no user info in URLs.
"""

from __future__ import annotations

import ipaddress
import logging
import socket
from dataclasses import dataclass

from aiohttp.abc import AbstractResolver, ResolveResult
from aiohttp.resolver import ThreadedResolver
from yarl import URL

from extensions.validates.settings import ValidationSettings

log = logging.getLogger("extensions.validates")
SCHEMES = ("http", "https")


class FetchRefused(Exception):
    """The policy forbids this fetch (not the document's fault, and asking again will not help)."""


class AddressRefused(OSError):
    """Raised by the resolver: the host has no address a fetch may go to."""


@dataclass(frozen=True)
class Prefix:
    scheme: str
    host: str
    port: int
    path: str  # "" matches every path; otherwise whole segments: "/a" matches "/a", "/a/..." (and "/a?...")

    def matches(self, url: URL) -> bool:
        if (url.scheme, (url.host or "").lower(), url.port) != (self.scheme, self.host, self.port):
            return False
        if not self.path or self.path.endswith("/"):
            return url.path.startswith(self.path)
        return url.path == self.path or url.path.startswith(self.path + "/")


def parse_url(value: str) -> URL:
    """An absolute http(s) URL with a host and no user info, or :class:`FetchRefused`."""
    try:
        url = URL(value)
    except (ValueError, TypeError):
        raise FetchRefused("not a URL") from None
    if url.scheme not in SCHEMES or not url.host or url.user is not None or url.password is not None:
        raise FetchRefused("only http(s) URLs with a host")
    if ".." in url.path.split("/"):
        raise FetchRefused("dot segments in the path")
    return url


def _prefix(value: str) -> Prefix:
    url = parse_url(value)
    if url.host is None or url.port is None:  # parse_url refuses both (http(s) has a default port)
        raise FetchRefused("only http(s) URLs with a host")
    return Prefix(url.scheme, url.host.lower(), url.port, "" if url.path == "/" else url.path)


def is_public(address: str) -> bool:
    """A global unicast address (not loopback, private, link-local, shared, reserved or multicast)."""
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return ip.is_global and not ip.is_multicast


def _ip_literal(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


class FetchPolicy:
    """The operator's allow list, and the check every URL (and every redirect) goes through."""

    def __init__(self, allow: tuple[str, ...], *, allow_public: bool) -> None:
        prefixes = []
        for value in dict.fromkeys(allow):  # fetch_allow is checked at load; an anchor may declare anything
            try:
                prefixes.append(_prefix(value))
            except FetchRefused:
                log.warning("[validation]: %r is no URL prefix; not allowed", value[:300])
        self.prefixes = tuple(prefixes)
        self.named_hosts = frozenset((p.host, p.port) for p in self.prefixes)
        self.allow_public = allow_public

    @classmethod
    def from_settings(cls, settings: ValidationSettings) -> FetchPolicy:
        return cls((*settings.fetch_defaults, *settings.fetch_allow), allow_public=settings.fetch_allow_public)

    def check(self, value: str | URL) -> URL:
        """The URL, parsed, if this policy allows fetching it; else :class:`FetchRefused`."""
        url = parse_url(str(value))
        if any(prefix.matches(url) for prefix in self.prefixes):
            return url
        if not self.allow_public:
            raise FetchRefused("URL not allowed by [validation] fetch_allow")
        if url.host is None:  # parse_url refuses it
            raise FetchRefused("only http(s) URLs with a host")
        if _ip_literal(url.host) and not is_public(url.host):
            raise FetchRefused("not a public address")
        return url

    def named(self, host: str, port: int) -> bool:
        """Whether an allowed prefix names this host and port (then any address is fine)."""
        return (host.lower(), port) in self.named_hosts


class PolicyResolver(AbstractResolver):
    """aiohttp's resolver, keeping only public addresses for hosts no allowed prefix names."""

    def __init__(self, policy: FetchPolicy) -> None:
        self.policy, self.inner = policy, ThreadedResolver()

    async def resolve(self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
                      ) -> list[ResolveResult]:
        found = await self.inner.resolve(host, port, family)
        if self.policy.named(host, port):
            return found
        public = [entry for entry in found if is_public(entry["host"])]
        if not public:
            raise AddressRefused(f"{host} has no public address")
        return public

    async def close(self) -> None:
        await self.inner.close()

