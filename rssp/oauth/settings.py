"""The ``[oauth]`` table of rssp.toml, read through ``Config.section`` like a plug-in's."""

from __future__ import annotations

from dataclasses import dataclass, fields

from rssp.config import Config, ConfigError

MAX_CODE_TTL = 60  # RFC 6749 §4.1.2 recommends at most 10 minutes; CSC flows need seconds
MAX_PAR_TTL = 90


@dataclass(frozen=True)
class OAuthSettings:
    issuer: str = ""  # RFC 8414 issuer; default: the server's public URL
    code_ttl_seconds: int = 60
    par_ttl_seconds: int = 90
    require_par: bool = False  # refuse authorization requests that were not pushed (RFC 9126 §5)
    session_ttl_seconds: int = 600  # the login/consent pages must be completed within this
    credential_token_ttl_seconds: int = 300  # like a SAD: short-lived
    service_token_ttl_seconds: int = 3600
    refresh_token_ttl_seconds: int = 30 * 24 * 3600
    client_token_ttl_seconds: int = 3600  # client_credentials

    @classmethod
    def from_config(cls, config: Config) -> OAuthSettings:
        raw = config.section("oauth")
        known = {f.name for f in fields(cls)}
        unknown = set(raw) - known
        if unknown:
            raise ConfigError(f"[oauth]: unknown setting(s) {', '.join(sorted(unknown))}")
        settings = cls(**raw)
        if not 1 <= settings.code_ttl_seconds <= MAX_CODE_TTL:
            raise ConfigError(f"[oauth] code_ttl_seconds must be 1..{MAX_CODE_TTL}")
        if not 1 <= settings.par_ttl_seconds <= MAX_PAR_TTL:
            raise ConfigError(f"[oauth] par_ttl_seconds must be 1..{MAX_PAR_TTL}")
        if not settings.issuer:
            settings = cls(**{**raw, "issuer": config.public_url})
        return settings
