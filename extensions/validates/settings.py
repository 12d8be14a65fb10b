"""The ``[validation]`` table of rssp.toml: whom to trust, what to fetch, and how hard to try.

A validation answer is only as good as its trust anchors, so they are explicit operator
configuration, never discovered: ``trust_anchors`` (PEM/DER files or directories of them)
anchor signer certificates, ``tsa_anchors`` anchor time-stamping units (they default to the
signer anchors), and ``ca_anchors = true`` adds the roots of the CAs configured under
``[ca.*]`` (the local CA's ``certificate_pem``, a connector's ``trust_anchors`` files), so a
credential this RSSP issued validates without further set-up.

Every URL a validation would fetch is named by what a caller sent, so fetching is operator
configuration too (:mod:`.fetchpolicy`): ``fetch_allow`` (URL prefixes) on top of the
defaults read here, the OCSP, CRL and caIssuers URLs the anchors themselves declare and, on a
development instance, its test PKI (``[devpki]``: ``http://127.0.0.1:PORT/rssp-dev/``).
The numbers bound the work of one request (fetches, bytes, seconds, PDF revisions and
signatures) and of the process (validations at once, waiting, per caller).
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509
from pyhanko_certvalidator.fetchers.common_utils import enumerate_delivery_point_urls, gather_aia_issuer_urls
from pyhanko_certvalidator.util import get_ocsp_urls, get_relevant_crl_dps
from yarl import URL

from rssp.config import Config, ConfigError

CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


@dataclass(frozen=True)
class ValidationSettings:
    trust_anchors: tuple[x509.Certificate, ...] = ()
    tsa_anchors: tuple[x509.Certificate, ...] = ()
    # decoded; ordinary signed PDFs are 1-10 MB. The request body limit follows [documents] max_document_bytes
    # (8 MiB by default: its Base64 fits), so raising this past it needs that raised too.
    max_document_bytes: int = 8 * 1024 * 1024
    max_certificates: int = 20
    revocation_timeout_seconds: float = 10.0  # one fetch (OCSP, CRL or certificate), redirects included
    # A response with no nextUpdate is kept this long; one with nextUpdate until then, at most max.
    revocation_default_cache_seconds: float = 300.0
    revocation_max_cache_seconds: float = 24 * 3600.0
    revocation_cache_entries: int = 10_000  # OCSP responses and CRLs kept per process (least recently used go)
    # what a request may fetch on the caller's behalf (see fetchpolicy.py)
    fetch_allow: tuple[str, ...] = ()  # URL prefixes the operator allows, besides fetch_defaults
    fetch_allow_public: bool = False  # any http(s) URL, connecting to public addresses only
    fetch_defaults: tuple[str, ...] = ()  # computed: the anchors' own URLs and the dev PKI's prefix
    max_fetches: int = 16  # network fetches per request (OCSP, CRL, certificates; each redirect counts); 0: offline
    max_fetch_bytes: int = 4 * 1024 * 1024  # one answer; the rest is not read
    max_fetch_redirects: int = 2
    max_issuer_depth: int = 4  # certificates fetched above one another through caIssuers
    fetch_total_seconds: float = 30.0  # all fetches of one request
    # the work of one PDF, and of the process
    max_pdf_revisions: int = 500  # revisions (the original plus its incremental updates)
    max_pdf_signatures: int = 30  # signatures and document timestamps (each reviews the updates after it)
    concurrent_validations: int = 8  # validations running at once per server process
    queued_validations: int = 32  # validations waiting for one of those; more get 503
    validations_per_caller: int = 16  # running and waiting of one user at once; more get 503
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


ZERO_ALLOWED = ("max_fetches",)  # 0 fetches: validation uses only what the document and the request carry
NUMBERS = tuple(f.name for f in fields(ValidationSettings)
                if f.name not in ("trust_anchors", "tsa_anchors", "fetch_allow", "fetch_defaults", "extra"))


def load_certificates(data: bytes) -> list[x509.Certificate]:
    """Every certificate in a PEM bundle, or the single DER certificate."""
    if pem.detect(data):
        return [x509.Certificate.load(der) for kind, _, der in pem.unarmor(data, multiple=True)
                if kind == "CERTIFICATE"]
    return [x509.Certificate.load(data)]


def _read_anchor_paths(directory: Path, entries: list[str], where: str) -> list[x509.Certificate]:
    out: list[x509.Certificate] = []
    for entry in entries:
        path = directory / entry
        files = sorted(p for p in path.iterdir() if p.suffix.lower() in CERT_SUFFIXES) if path.is_dir() else [path]
        for file in files:
            try:
                out.extend(load_certificates(file.read_bytes()))
            except (OSError, ValueError) as exc:
                raise ConfigError(f"[validation] {where}: cannot read {file}: {exc}") from None
    return out


def ca_anchors(config: Config) -> list[x509.Certificate]:
    """The roots of the CAs this RSSP enrolls credentials with (``[ca.*]``)."""
    out: list[x509.Certificate] = []
    for ca_id, table in config.cas.items():
        if isinstance(table.get("certificate_pem"), str):
            out.extend(load_certificates(table["certificate_pem"].encode("ascii")))
        anchors = table.get("trust_anchors") or table.get("anchors") or []
        if isinstance(anchors, list):
            out.extend(_read_anchor_paths(config.directory, anchors, f"ca.{ca_id}"))
    return out


def _unique(certs: list[x509.Certificate]) -> tuple[x509.Certificate, ...]:
    """Each anchor once, parsed through: asn1crypto parses lazily and caches on first use, and
    the anchors are shared by every validation thread (no thread should race another's parse)."""
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        cert.native  # noqa: B018
        (cert.subject.sha256, cert.issuer.sha256, cert.key_identifier, cert.public_key.sha256, cert.self_signed)  # noqa: B018
        seen.setdefault(cert.sha256, cert)
    return tuple(seen.values())


def declared_urls(cert: x509.Certificate) -> list[str]:
    """The http(s) OCSP, CRL and caIssuers URLs a certificate declares (as pyhanko-certvalidator reads them)."""
    urls = [*get_ocsp_urls(cert), *gather_aia_issuer_urls(cert)]
    for point in get_relevant_crl_dps(cert, use_deltas=True):
        urls += enumerate_delivery_point_urls(point)
    return urls


def default_fetch_urls(config: Config, anchors: tuple[x509.Certificate, ...]) -> tuple[str, ...]:
    """What may be fetched with no ``fetch_allow``: the anchors' own URLs and the dev PKI's services."""
    urls = [url for cert in anchors for url in declared_urls(cert)]
    devpki = config.section("devpki")
    if devpki.get("enabled") and devpki.get("port"):
        urls.append(f"http://{devpki.get('host', '127.0.0.1')}:{int(devpki['port'])}/{devpki.get('arch', 'rssp-dev')}/")
    return tuple(dict.fromkeys(urls))


def _strings(section: dict[str, Any], key: str) -> tuple[str, ...]:
    value = section.get(key, [])
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise ConfigError(f"[validation] {key} must be a list of strings")
    return tuple(value)


def _prefixes(section: dict[str, Any]) -> tuple[str, ...]:
    """``fetch_allow``: absolute http(s) URLs with a host (a prefix names at least a host)."""
    values = _strings(section, "fetch_allow")
    for value in values:
        url = URL(value)
        if url.scheme not in ("http", "https") or not url.host or url.user is not None:
            raise ConfigError(f"[validation] fetch_allow: {value!r} is not an http(s) URL prefix with a host")
    return values


def load_settings(config: Config) -> ValidationSettings:
    section = config.section("validation")
    anchors = _read_anchor_paths(config.directory, list(_strings(section, "trust_anchors")), "trust_anchors")
    if section.get("ca_anchors", True):
        anchors += ca_anchors(config)
    tsa = section.get("tsa_anchors")
    tsa_anchors = _read_anchor_paths(config.directory, list(tsa), "tsa_anchors") if tsa is not None else anchors
    known = {"trust_anchors", "tsa_anchors", "ca_anchors", "fetch_allow"}
    numbers = {k: section[k] for k in NUMBERS if k in section}
    unknown = set(section) - known - set(numbers)
    if unknown:
        raise ConfigError(f"[validation] unknown settings: {', '.join(sorted(unknown))}")
    if any(isinstance(v, bool) != isinstance(getattr(ValidationSettings, k), bool) or
           not isinstance(v, int | float) for k, v in numbers.items()):
        raise ConfigError("[validation] limits are numbers (fetch_allow_public: true or false)")
    if any(v <= 0 for k, v in numbers.items() if not isinstance(v, bool) and k not in ZERO_ALLOWED):
        raise ConfigError("[validation] limits must be positive")
    if any(v < 0 for v in numbers.values()):
        raise ConfigError("[validation] limits must not be negative")
    all_anchors = _unique(anchors + tsa_anchors)
    return ValidationSettings(trust_anchors=_unique(anchors), tsa_anchors=_unique(tsa_anchors),
                              fetch_allow=_prefixes(section),
                              fetch_defaults=default_fetch_urls(config, all_anchors), **numbers)
