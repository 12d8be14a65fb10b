"""The ``[timestamps]`` table of rssp.toml, parsed once and checked at start-up.

A mistake in the TSA configuration (a missing anchor file, an unknown hash name, two
defaults) stops the server at start-up with the TSA's ID in the message, instead of turning
into 503s at run time. Secrets (HTTP Basic password, client key password) may be given
inline or, better, in a file next to rssp.toml; they are kept out of ``repr``.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509

from rssp.config import ConfigError
from rssp.hash_algorithms import CLIENT_DIGESTS, HASHES, SIGNING_HASHES

# ``hash_algorithms`` names in rssp.toml ("sha256", "sha3-256") → OID, and each OID's digest size
HASH_NAMES = {name.replace("_", "-"): HASHES[name].oid for name in CLIENT_DIGESTS}
HASH_SIZES = {HASHES[name].oid: HASHES[name].size for name in CLIENT_DIGESTS}
DEFAULT_HASHES = tuple(HASHES[name].oid for name in SIGNING_HASHES)
REVOCATION_MODES = ("soft-fail", "hard-fail", "require")
_ID = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_OID = re.compile(r"^[0-2](\.(0|[1-9][0-9]*))+$")


@dataclass(frozen=True)
class TsaSettings:
    """One upstream TSA as configured under ``[timestamps.tsa.<timestampID>]``."""

    timestamp_id: str
    url: str = field(repr=False)
    name: str | dict[str, str]
    description: str | dict[str, str] = ""
    policy_oid: str | None = None
    hash_oids: tuple[str, ...] = DEFAULT_HASHES
    priority: int = 100
    default: bool = False
    enabled: bool = True
    auto_select: bool = True
    accreditation: dict[str, Any] = field(default_factory=dict)
    accuracy_seconds: float | None = None
    anchors: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    intermediates: tuple[x509.Certificate, ...] = field(default=(), repr=False)
    request_policy: bool = False
    revocation: str = "soft-fail"
    max_clock_skew_seconds: float = 300.0
    timeout_seconds: float = 10.0
    connect_timeout_seconds: float = 5.0
    max_connections: int = 64
    username: str | None = field(default=None, repr=False)
    password: str | None = field(default=None, repr=False)
    client_cert: Path | None = field(default=None, repr=False)
    client_key: Path | None = field(default=None, repr=False)
    client_key_password: str | None = field(default=None, repr=False)
    ca_file: Path | None = field(default=None, repr=False)
    chain_cache_seconds: float = 300.0
    client: str = "rfc3161"


@dataclass(frozen=True)
class PoolSettings:
    """The pool-wide part of ``[timestamps]``."""

    tsas: tuple[TsaSettings, ...]
    cooldown_seconds: float = 30.0
    probe_on_start: bool = True
    probe_interval_seconds: float = 60.0  # a healthy TSA is probed this often too; 0: only failed ones
    raw: dict[str, dict[str, Any]] = field(default_factory=dict, repr=False)  # each TSA's table, for plug-ins


def load_certificates(path: Path) -> list[x509.Certificate]:
    """Every certificate in a PEM (one or more blocks) or DER file."""
    data = path.read_bytes()
    if pem.detect(data):
        return [x509.Certificate.load(der) for kind, _, der in pem.unarmor(data, multiple=True)
                if kind == "CERTIFICATE"]
    return [x509.Certificate.load(data)]


class _Reader:
    """Typed access to one TSA table, with errors that name the TSA and the key."""

    def __init__(self, where: str, table: dict[str, Any], directory: Path) -> None:
        self.where, self.table, self.directory = where, table, directory

    def fail(self, key: str, why: str) -> ConfigError:
        return ConfigError(f"{self.where}.{key}: {why}")

    def get(self, key: str, kind: type | tuple[type, ...], default: Any = None) -> Any:
        value = self.table.get(key, default)
        if value is not None and (not isinstance(value, kind) or (kind is not bool and isinstance(value, bool))):
            raise self.fail(key, f"expected {getattr(kind, '__name__', kind)}")
        return value

    def number(self, key: str, default: float, minimum: float = 0.0) -> float:
        value = self.get(key, (int, float), default)
        if value < minimum:
            raise self.fail(key, f"must be >= {minimum}")
        return float(value)

    def path(self, key: str) -> Path | None:
        value = self.get(key, str)
        if value is None:
            return None
        path = self.directory / value
        if not path.is_file():
            raise self.fail(key, f"{path} not found")
        return path

    def secret(self, key: str) -> str | None:
        """``key`` inline, or ``key_file`` holding it (the file is preferred: no secrets in rssp.toml)."""
        inline = self.get(key, str)
        file = self.path(f"{key}_file")
        if inline is not None and file is not None:
            raise self.fail(key, f"give {key} or {key}_file, not both")
        return file.read_text(encoding="utf-8").strip() if file is not None else inline

    def certificates(self, key: str) -> tuple[x509.Certificate, ...]:
        names = self.get(key, list, [])
        out: list[x509.Certificate] = []
        for name in names:
            if not isinstance(name, str):
                raise self.fail(key, "expected a list of file names")
            path = self.directory / name
            try:
                certs = load_certificates(path)
            except (OSError, ValueError) as exc:
                raise self.fail(key, f"cannot read certificates from {path}: {exc}") from None
            if not certs:
                raise self.fail(key, f"no certificate in {path}")
            out.extend(certs)
        return tuple(out)

    def text(self, key: str, default: str) -> str | dict[str, str]:
        """A display text: a string, or a table of language tag -> string (``lang`` picks one)."""
        value = self.table.get(key, default)
        if isinstance(value, str):
            return value
        if isinstance(value, dict) and value and all(isinstance(k, str) and isinstance(v, str)
                                                     for k, v in value.items()):
            return dict(value)
        raise self.fail(key, "expected a string or a table of language -> string")


def _hash_oids(reader: _Reader) -> tuple[str, ...]:
    values = reader.get("hash_algorithms", list)
    if values is None:
        return DEFAULT_HASHES
    oids = []
    for value in values:
        oid = HASH_NAMES.get(str(value).lower(), value)
        if oid not in HASH_SIZES:
            raise reader.fail("hash_algorithms", f"unsupported hash algorithm {value!r}")
        oids.append(oid)
    if not oids:
        raise reader.fail("hash_algorithms", "must not be empty")
    return tuple(dict.fromkeys(oids))


def _accreditation(reader: _Reader) -> dict[str, Any]:
    table = reader.get("accreditation", dict, {})
    out: dict[str, Any] = {}
    for key in ("scheme", "authority", "since"):
        value = table.get(key)
        if value is not None:
            out[key] = str(value)  # TOML dates become ISO strings
    accredited = table.get("accredited", False)
    if not isinstance(accredited, bool):
        raise reader.fail("accreditation.accredited", "expected a boolean")
    out["accredited"] = accredited
    return out


def parse_tsa(timestamp_id: str, table: dict[str, Any], directory: Path) -> TsaSettings:
    if not _ID.match(timestamp_id):
        raise ConfigError(f"[timestamps.tsa.{timestamp_id}]: IDs are 1-64 of A-Z a-z 0-9 . _ -")
    r = _Reader(f"[timestamps.tsa.{timestamp_id}]", table, directory)
    url = r.get("url", str)
    if not url or not url.startswith(("http://", "https://")):
        raise r.fail("url", "an http:// or https:// URL is required")
    policy = r.get("policy_oid", str)
    if policy is not None and not _OID.match(policy):
        raise r.fail("policy_oid", "not a dotted OID")
    anchors = r.certificates("anchors")
    if not anchors:
        raise r.fail("anchors", "at least one trust anchor certificate file is required")
    revocation = r.get("revocation", str, "soft-fail")
    if revocation not in REVOCATION_MODES:
        raise r.fail("revocation", f"one of {', '.join(REVOCATION_MODES)}")
    accuracy = r.get("accuracy_seconds", (int, float))
    client_cert, client_key = r.path("client_cert"), r.path("client_key")
    if client_key is not None and client_cert is None:
        raise r.fail("client_key", "needs client_cert")
    return TsaSettings(
        timestamp_id=timestamp_id, url=url,
        name=r.text("name", timestamp_id), description=r.text("description", ""),
        policy_oid=policy, hash_oids=_hash_oids(r), priority=int(r.number("priority", 100)),
        default=r.get("default", bool, False), enabled=r.get("enabled", bool, True),
        auto_select=r.get("auto_select", bool, True), accreditation=_accreditation(r),
        accuracy_seconds=float(accuracy) if accuracy is not None else None,
        anchors=anchors, intermediates=r.certificates("intermediates"),
        request_policy=r.get("request_policy", bool, False), revocation=revocation,
        max_clock_skew_seconds=r.number("max_clock_skew_seconds", 300.0),
        timeout_seconds=r.number("timeout_seconds", 10.0, 0.1),
        connect_timeout_seconds=r.number("connect_timeout_seconds", 5.0, 0.1),
        max_connections=int(r.number("max_connections", 64, 1)),
        username=r.get("username", str), password=r.secret("password"),
        client_cert=client_cert, client_key=client_key, client_key_password=r.secret("client_key_password"),
        ca_file=r.path("ca_file"), chain_cache_seconds=r.number("chain_cache_seconds", 300.0),
        client=r.get("client", str, "rfc3161"),
    )


def parse_pool(section: dict[str, Any], directory: Path) -> PoolSettings:
    """``[timestamps]``: pool settings and ``[timestamps.tsa.<id>]`` tables."""
    r = _Reader("[timestamps]", section, directory)
    tables = r.get("tsa", dict, {})
    tsas = []
    for tsa_id, table in tables.items():
        if not isinstance(table, dict):
            raise ConfigError(f"[timestamps.tsa.{tsa_id}] must be a table")
        tsas.append(parse_tsa(tsa_id, table, directory))
    defaults = [t.timestamp_id for t in tsas if t.default]
    if len(defaults) > 1:
        raise ConfigError(f"[timestamps]: more than one default TSA ({', '.join(defaults)})")
    if defaults and not next(t for t in tsas if t.default).enabled:
        raise ConfigError(f"[timestamps.tsa.{defaults[0]}]: the default TSA is disabled")
    return PoolSettings(
        tsas=tuple(tsas),
        cooldown_seconds=r.number("cooldown_seconds", 30.0, 0.0),
        probe_on_start=r.get("probe_on_start", bool, True),
        probe_interval_seconds=r.number("probe_interval_seconds", 60.0, 0.0),
        raw={tsa_id: dict(table) for tsa_id, table in tables.items()},
    )
