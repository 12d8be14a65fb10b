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

from rssp.errors import OperatorError

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


@dataclass(frozen=True)
class HsmConfig:
    module: str
    token_label: str
    pin: str = field(repr=False)
    softhsm2_conf: str | None


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


@dataclass(frozen=True)
class DocumentsConfig:
    """``[documents]``: signatures/signDoc."""

    max_document_bytes: int = 8 * 1024 * 1024  # decoded, all documents of one request together
    revocation_timeout_seconds: float = 10.0  # per OCSP/CRL fetch when B-LT/B-LTA embeds revocation data


@dataclass(frozen=True)
class ServiceInfo:
    """What ``info`` says about this RSSP."""

    name: str = "rssp"
    description: str = "rssp Remote Signing Service Provider"
    region: str = "JP"
    lang: str = "en-US"
    logo: str = ""


@dataclass(frozen=True)
class Config:
    directory: Path
    database_url: str
    hsm: HsmConfig
    server: ServerConfig = ServerConfig()
    security: SecurityConfig = SecurityConfig()
    service: ServiceInfo = ServiceInfo()
    documents: DocumentsConfig = DocumentsConfig()
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
        return max(self.server.max_body_bytes, self.documents.max_document_bytes * 4 // 3 + 64 * 1024)

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
    for name in ("body_timeout_seconds", "keepalive_timeout_seconds"):
        if not 0 < getattr(server, name) < float("inf"):
            raise ValueError(f"[server] {name} must be a positive number of seconds")
    if server.tls_certificate:
        server = replace(server, tls_certificate=str(directory / server.tls_certificate),
                         tls_key=str(directory / server.tls_key))
    return server


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
        cas=cas,
        default_ca=raw.get("ca", {}).get("default", next(iter(cas), "")),
        raw=raw,
    )
