"""The ``[oob]``, ``[smtp]``, ``[webauthn]`` and ``[oidc.NAME]`` tables of rssp.toml.

Read through :meth:`Config.section` like a plug-in's tables, once at start-up, so a mistake
stops ``rssp serve`` with one clear line instead of failing the first signer. Secrets (the SMTP
password, OpenID client secrets) live in files next to rssp.toml, named here, like the HSM PIN.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from rssp.config import Config, ConfigError

_SECURITY_PORTS = {"starttls": 587, "tls": 465, "none": 25}


@dataclass(frozen=True)
class OobSettings:
    """``[oob]``: one-time codes and approval links sent out of band."""

    delivery: str = "smtp"  # the rssp.otp_delivery plug-in that sends e-mail
    code_digits: int = 6
    code_ttl_seconds: int = 300
    link_ttl_seconds: int = 600  # an e-mailed approval (credentials/authorize 202) waits this long
    send_window_seconds: int = 900
    sends_per_credential: int = 5  # codes and links sent for one credential within the window
    sends_per_user: int = 10  # ... for all the credentials of one user


@dataclass(frozen=True)
class SmtpSettings:
    """``[smtp]``: the relay e-mail goes through (``from`` in the file is ``sender`` here)."""

    host: str = ""
    port: int = 0  # 0: 587 for starttls, 465 for tls, 25 for none
    security: str = "starttls"  # starttls | tls | none
    username: str = ""
    password: str = field(default="", repr=False)  # read from password_file
    sender: str = ""
    cafile: str = ""  # trust anchors for the relay's certificate (default: the system's)
    timeout_seconds: float = 30.0


@dataclass(frozen=True)
class WebAuthnSettings:
    """``[webauthn]``: the relying party passkeys are bound to."""

    rp_id: str
    origin: str
    rp_name: str
    registration_link_ttl_seconds: int = 7 * 24 * 3600
    timeout_seconds: int = 120


@dataclass(frozen=True)
class OidcProvider:
    """``[oidc.NAME]``: an external OpenID Provider a credential can require (JPKI app, gBizID)."""

    name: str
    issuer: str
    client_id: str
    client_secret: str = field(repr=False)
    label: str = ""  # shown on the consent page
    scopes: tuple[str, ...] = ("openid",)
    max_age_seconds: int = 300
    timeout_seconds: float = 10.0


@dataclass(frozen=True)
class FactorSettings:
    oob: OobSettings
    smtp: SmtpSettings
    webauthn: WebAuthnSettings
    oidc: dict[str, OidcProvider]
    public_url: str
    service_name: str
    lang: str

    def provider_for(self, issuer: str) -> OidcProvider | None:
        return next((p for p in self.oidc.values() if p.issuer == issuer), None)


def _known(cls: type, table: str, raw: dict[str, Any], extra: tuple[str, ...] = ()) -> None:
    unknown = set(raw) - {f.name for f in fields(cls)} - set(extra)
    if unknown:
        raise ConfigError(f"[{table}]: unknown setting(s) {', '.join(sorted(unknown))}")


def _secret(directory: Path, table: str, raw: dict[str, Any], key: str) -> str:
    name = raw.get(key)
    if not name:
        return ""
    try:
        return (directory / str(name)).read_text(encoding="utf-8").strip()
    except OSError as exc:
        raise ConfigError(f"[{table}] {key}: {exc}") from None


def _oob(raw: dict[str, Any]) -> OobSettings:
    _known(OobSettings, "oob", raw)
    oob = OobSettings(**raw)
    if not 6 <= oob.code_digits <= 10:
        raise ConfigError("[oob] code_digits must be 6 to 10")
    for name in ("code_ttl_seconds", "link_ttl_seconds", "send_window_seconds", "sends_per_credential",
                 "sends_per_user"):
        if not isinstance(getattr(oob, name), int) or getattr(oob, name) < 1:
            raise ConfigError(f"[oob] {name} must be a positive integer")
    return oob


def _smtp(directory: Path, raw: dict[str, Any]) -> SmtpSettings:
    _known(SmtpSettings, "smtp", raw, extra=("from", "password_file"))
    values = {k: v for k, v in raw.items() if k not in ("from", "password_file", "password")}
    smtp = SmtpSettings(**values, sender=str(raw.get("from", "")), password=_secret(directory, "smtp", raw,
                                                                                      "password_file"))
    if smtp.security not in _SECURITY_PORTS:
        raise ConfigError("[smtp] security must be starttls, tls or none")
    if "password" in raw:
        raise ConfigError("[smtp] put the password in a file and name it with password_file")
    if smtp.cafile:
        smtp = SmtpSettings(**{**smtp.__dict__, "cafile": str(directory / smtp.cafile)})
    return SmtpSettings(**{**smtp.__dict__, "port": smtp.port or _SECURITY_PORTS[smtp.security]})


def _webauthn(raw: dict[str, Any], public_url: str, service_name: str) -> WebAuthnSettings:
    _known(WebAuthnSettings, "webauthn", raw)
    parts = urlsplit(public_url)
    defaults = {"rp_id": parts.hostname or "localhost", "origin": f"{parts.scheme}://{parts.netloc}",
                "rp_name": service_name}
    return WebAuthnSettings(**{**defaults, **raw})


def _providers(directory: Path, raw: dict[str, Any]) -> dict[str, OidcProvider]:
    out: dict[str, OidcProvider] = {}
    for name, table in raw.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[oidc] {name}: expected a table [oidc.{name}]")
        _known(OidcProvider, f"oidc.{name}", table, extra=("client_secret_file",))
        if "client_secret" in table:
            raise ConfigError(f"[oidc.{name}] put the client secret in a file and name it with client_secret_file")
        values = {k: v for k, v in table.items() if k != "client_secret_file"}
        if "scopes" in values:
            values["scopes"] = tuple(values["scopes"])
        try:
            provider = OidcProvider(name=name, client_secret=_secret(directory, f"oidc.{name}", table,
                                                                     "client_secret_file"), **values)
        except TypeError as exc:
            raise ConfigError(f"[oidc.{name}]: {exc}") from None
        if "openid" not in provider.scopes or not provider.issuer.startswith(("https://", "http://")):
            raise ConfigError(f"[oidc.{name}] needs an http(s) issuer and the openid scope")
        out[name] = provider
    return out


def load_settings(config: Config) -> FactorSettings:
    """Every factor table of ``config``; :class:`ConfigError` names the first mistake."""
    try:
        return FactorSettings(
            oob=_oob(config.section("oob")), smtp=_smtp(config.directory, config.section("smtp")),
            webauthn=_webauthn(config.section("webauthn"), config.public_url, config.service.name),
            oidc=_providers(config.directory, config.section("oidc")), public_url=config.public_url.rstrip("/"),
            service_name=config.service.name, lang=config.service.lang,
        )
    except TypeError as exc:
        raise ConfigError(f"rssp.toml: {exc}") from None
