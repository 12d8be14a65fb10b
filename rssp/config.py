"""The instance configuration: ``DIR/rssp.toml``.

An instance is one directory holding its configuration, its SQLite database (unless a
PostgreSQL URL is configured), its SoftHSM2 token and the HSM PIN file. Relative paths in
``rssp.toml`` are relative to that directory, so an instance can be moved as a whole.
"""

from __future__ import annotations

import os
import tomllib
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import tomli_w

from rssp.auth.argon2_cost import LEVEL3_KEK, PASSWORDS, Argon2Cost
from rssp.errors import OperatorError
from rssp.jobs.callback import CallbackPolicy

CONFIG_NAME = "rssp.toml"


class ConfigError(OperatorError):
    """The instance directory or its rssp.toml is missing or wrong."""


@dataclass(frozen=True)
class ServerConfig:
    host: str = "127.0.0.1"
    port: int = 8080
    max_body_bytes: int = 1024 * 1024
    public_url: str = ""
    tls_certificate: str = ""  # PEM chain; with tls_key, serve HTTPS (TLS 1.2+) instead of HTTP
    tls_key: str = ""
    body_timeout_seconds: float = 30.0  # a request body not complete this long after its headers: 408, closed
    keepalive_timeout_seconds: float = 75.0  # an idle connection, or one still sending its headers, is closed
    lingering_seconds: float = 10.0  # after an answer to an unread body, what the client still sends is read this long
    shutdown_delay_seconds: float = 0.0  # after SIGTERM: /readyz says 503 this long before the port closes
    shutdown_timeout_seconds: float = 30.0  # then requests in flight get this long to finish


@dataclass(frozen=True)
class MetricsConfig:
    """``[metrics]``: where ``rssp serve`` answers ``GET /metrics`` (Prometheus text); port 0: nowhere."""

    host: str = "127.0.0.1"
    port: int = 0


@dataclass(frozen=True)
class HsmConfig:
    module: str
    token_label: str
    pin: str = field(repr=False)
    softhsm2_conf: str | None
    reconcile_on_start: bool = True  # rssp serve destroys orphan credential keys first (rssp.doctor)


@dataclass(frozen=True)
class SecurityConfig:
    sad_ttl_seconds: int = 300
    access_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    max_failed_attempts: int = 5
    max_hashes_per_request: int = 1000
    login_user_failures: int = 5  # failed password logins of one username before a block
    login_address_failures: int = 100  # ... and from one client address
    login_block_seconds: float = 60.0  # first block; doubles with each further failure
    login_max_block_seconds: float = 900.0
    login_concurrency: int = 8  # unauthenticated login checks one worker runs or queues at once; more get 429
    sad_max_lifetime_seconds: int = 3600  # a transaction's absolute lifetime: extendTransaction cannot pass it
    # credentials created by an operator or an RA cannot sign until the signer changes the PIN they chose
    require_pin_change_on_first_use: bool = False
    # argon2id cost of new hashes (rssp.auth.argon2_cost): passwords and level 1-2 PINs, the level-3 KEK
    argon2_memory_kib: int = PASSWORDS.memory_kib
    argon2_passes: int = PASSWORDS.passes
    argon2_lanes: int = PASSWORDS.lanes
    level3_kek_memory_kib: int = LEVEL3_KEK.memory_kib
    level3_kek_passes: int = LEVEL3_KEK.passes
    level3_kek_lanes: int = LEVEL3_KEK.lanes

    def __post_init__(self) -> None:
        for name, cost in (("argon2_", self.argon2), ("level3_kek_", self.level3_kek_argon2)):
            problem = cost.problem()
            if problem:
                raise ValueError(f"[security] {name}*: {problem}")

    @property
    def argon2(self) -> Argon2Cost:
        return Argon2Cost(self.argon2_memory_kib, self.argon2_passes, self.argon2_lanes)

    @property
    def level3_kek_argon2(self) -> Argon2Cost:
        return Argon2Cost(self.level3_kek_memory_kib, self.level3_kek_passes, self.level3_kek_lanes)


@dataclass(frozen=True)
class DocumentsConfig:
    """``[documents]``: signatures/signDoc."""

    max_document_bytes: int = 8 * 1024 * 1024  # decoded, all documents of one request together
    revocation_timeout_seconds: float = 10.0  # per OCSP/CRL fetch when B-LT/B-LTA embeds revocation data


def large_body_limit(server: ServerConfig, documents: DocumentsConfig) -> int:
    """The body limit of the methods that take whole documents: their Base64 and some room."""
    return max(server.max_body_bytes, documents.max_document_bytes * 4 // 3 + 64 * 1024)


@dataclass(frozen=True)
class ServiceInfo:
    """What ``info`` says about this RSSP."""

    name: str = "rssp"
    description: str = "rssp Remote Signing Service Provider"
    region: str = "JP"
    lang: str = "en-US"
    logo: str = ""


@dataclass(frozen=True)
class AsyncConfig:
    """``[async]``: CSC asynchronous mode (``operationMode: "A"``, ``signatures/signPolling``)."""

    default_validity_period_ms: int = 600_000  # how long a result is kept when the client names no validity_period
    max_validity_period_ms: int = 3_600_000  # a larger validity_period is refused
    response_uri_hosts: tuple[str, ...] = ()  # "host" (the scheme's default port) or "host:port"; none: no response_uri
    response_uri_allow_http: bool = False  # plain-http response_uri (https only otherwise)
    response_uri_private_networks: tuple[str, ...] = ()  # CIDRs a listed host name may resolve into
    callback_timeout_seconds: float = 10.0  # one notification attempt, connect to response
    callback_attempts: int = 5  # notification attempts in all
    callback_backoff_seconds: float = 1.0  # wait before the 2nd attempt; doubles for each further one
    lease_seconds: float = 60.0  # a worker that stops renewing its claim this long loses the job to another
    max_attempts: int = 3  # runs of one job (crashes and transient failures) before it fails
    run_timeout_seconds: float = 300.0  # one run taking longer is abandoned (and counts as a failed run)
    poll_interval_seconds: float = 5.0  # how often a worker looks for jobs queued by other processes
    concurrency: int = 4  # jobs one worker process runs at once
    test_hold_file: str = ""  # tests only: while this file (in the instance directory) exists, claimed jobs wait

    def callback_policy(self) -> CallbackPolicy:
        return CallbackPolicy.parse(self.response_uri_hosts, self.response_uri_allow_http,
                                    self.response_uri_private_networks)


@dataclass(frozen=True)
class Config:
    directory: Path
    database_url: str
    hsm: HsmConfig
    server: ServerConfig = ServerConfig()
    security: SecurityConfig = SecurityConfig()
    service: ServiceInfo = ServiceInfo()
    documents: DocumentsConfig = DocumentsConfig()
    asynchronous: AsyncConfig = AsyncConfig()
    metrics: MetricsConfig = MetricsConfig()
    cas: dict[str, dict[str, Any]] = field(default_factory=dict)
    default_ca: str = ""
    raw: dict[str, Any] = field(default_factory=dict, repr=False)  # every table, for plug-ins' own sections

    def section(self, name: str) -> dict[str, Any]:
        """A plug-in's own top-level table of rssp.toml (empty if absent)."""
        value = self.raw.get(name, {})
        return value if isinstance(value, dict) else {}

    @property
    def max_request_bytes(self) -> int:
        """The largest body any method accepts: a signDoc call with its documents in Base64."""
        return large_body_limit(self.server, self.documents)

    @property
    def public_url(self) -> str:
        scheme = "https" if self.server.tls_certificate else "http"
        return self.server.public_url or f"{scheme}://{self.server.host}:{self.server.port}"


def load_config(directory: str | Path, content: bytes | None = None) -> Config:
    """Read ``DIR/rssp.toml`` (or ``content``, the file's bytes as already read and checked).

    ``RSSP_DATABASE_URL`` overrides the database URL.
    """
    directory = Path(directory).resolve()
    path = directory / CONFIG_NAME
    if content is None and not path.is_file():
        raise ConfigError(f"{path} not found: run 'rssp init {directory}' first")
    try:
        text = path.read_text(encoding="utf-8") if content is None else content.decode("utf-8")
        return config_from_raw(directory, tomllib.loads(text))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError, OSError) as exc:
        raise ConfigError(f"{path}: {exc}") from None


def config_from_raw(directory: Path, raw: dict[str, Any]) -> Config:
    """The configuration these tables describe; :class:`ConfigError` if they are not one."""
    try:
        return _from_dict(directory, raw)
    except (KeyError, TypeError, ValueError, OSError) as exc:
        raise ConfigError(f"{directory / CONFIG_NAME}: {exc}") from None


def write_config(directory: Path, raw: dict[str, Any]) -> None:
    """Replace rssp.toml with ``raw``, keeping its leading comment block; atomic (rename).

    Callers that change rssp.toml re-seal it (:mod:`rssp.config_seal`) under an operator.
    """
    path = directory / CONFIG_NAME
    header = []
    if path.exists():
        for line in path.read_text(encoding="utf-8").splitlines(keepends=True):
            if line.strip() and not line.startswith("#"):
                break
            header.append(line)
    tmp = path.with_name(f".{CONFIG_NAME}.{os.getpid()}.tmp")
    tmp.write_text("".join(header) + tomli_w.dumps(raw), encoding="utf-8")
    os.replace(tmp, path)


def _server(directory: Path, raw: dict[str, Any]) -> ServerConfig:
    server = ServerConfig(**raw)
    if bool(server.tls_certificate) != bool(server.tls_key):
        raise ValueError("[server] tls_certificate and tls_key go together")
    for name in ("body_timeout_seconds", "keepalive_timeout_seconds", "shutdown_timeout_seconds",
                 "shutdown_delay_seconds", "lingering_seconds"):
        if isinstance(getattr(server, name), bool) or not isinstance(getattr(server, name), int | float):
            raise ValueError(f"[server] {name} must be a number of seconds")
    for name in ("body_timeout_seconds", "keepalive_timeout_seconds", "shutdown_timeout_seconds"):
        if not 0 < getattr(server, name) < float("inf"):
            raise ValueError(f"[server] {name} must be a positive number of seconds")
    if not 0 <= server.shutdown_delay_seconds <= 3600:
        raise ValueError("[server] shutdown_delay_seconds must be between 0 and 3600")
    if not 0 <= server.lingering_seconds <= 300:
        raise ValueError("[server] lingering_seconds must be between 0 and 300")
    if server.tls_certificate:
        server = replace(server, tls_certificate=str(directory / server.tls_certificate),
                         tls_key=str(directory / server.tls_key))
    return server


def _async(raw: dict[str, Any]) -> AsyncConfig:
    names = ("response_uri_hosts", "response_uri_private_networks")
    lists: dict[str, tuple[Any, ...]] = {k: tuple(raw[k]) for k in names if k in raw}
    conf = AsyncConfig(**{**raw, **lists})
    numbers = ("default_validity_period_ms", "max_validity_period_ms", "callback_timeout_seconds", "callback_attempts",
               "lease_seconds", "max_attempts", "run_timeout_seconds", "poll_interval_seconds", "concurrency")
    for name in numbers:
        if not 0 < getattr(conf, name) < float("inf"):
            raise ValueError(f"[async] {name} must be a positive number")
    if conf.default_validity_period_ms > conf.max_validity_period_ms:
        raise ValueError("[async] default_validity_period_ms must not exceed max_validity_period_ms")
    if not 0 <= conf.callback_backoff_seconds <= 3600:
        raise ValueError("[async] callback_backoff_seconds must be between 0 and 3600")
    conf.callback_policy()  # a malformed host or network entry is refused at start-up
    return conf


def _metrics(raw: dict[str, Any]) -> MetricsConfig:
    conf = MetricsConfig(**raw)
    if not isinstance(conf.port, int) or not 0 <= conf.port <= 65535 or not conf.host:
        raise ValueError("[metrics] port must be 0 (off) to 65535, with a host to bind")
    return conf


def _from_dict(directory: Path, raw: dict[str, Any]) -> Config:
    database_url = os.environ.get("RSSP_DATABASE_URL") or raw["database"]["url"]
    database_url = database_url.replace("{dir}", str(directory))
    hsm_raw = raw["hsm"]
    pin = (directory / hsm_raw["pin_file"]).read_text(encoding="utf-8").strip()
    conf = hsm_raw.get("softhsm2_conf")
    hsm = HsmConfig(
        module=hsm_raw["module"],
        token_label=hsm_raw["token_label"],
        pin=pin,
        softhsm2_conf=str(directory / conf) if conf else None,
        reconcile_on_start=bool(hsm_raw.get("reconcile_on_start", True)),
    )
    cas = {k: v for k, v in raw.get("ca", {}).items() if isinstance(v, dict)}
    return Config(
        directory=directory,
        database_url=database_url,
        hsm=hsm,
        server=_server(directory, raw.get("server", {})),
        security=SecurityConfig(**raw.get("security", {})),
        service=ServiceInfo(**raw.get("service", {})),
        documents=DocumentsConfig(**raw.get("documents", {})),
        asynchronous=_async(raw.get("async", {})),
        metrics=_metrics(raw.get("metrics", {})),
        cas=cas,
        default_ca=raw.get("ca", {}).get("default", next(iter(cas), "")),
        raw=raw,
    )
