"""The ``[validation]`` table of rssp.toml: whom to trust, and how hard to try.

A validation answer is only as good as its trust anchors, so they are explicit operator
configuration, never discovered: ``trust_anchors`` (PEM/DER files or directories of them)
anchor signer certificates, ``tsa_anchors`` anchor time-stamping units (they default to the
signer anchors), and ``ca_anchors = true`` adds the roots of the CAs configured under
``[ca.*]`` (the local CA's ``certificate_pem``, a connector's ``trust_anchors`` files), so a
credential this RSSP issued validates without further set-up.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from asn1crypto import pem, x509

from rssp.config import Config, ConfigError

CERT_SUFFIXES = (".pem", ".crt", ".cer", ".der")


@dataclass(frozen=True)
class ValidationSettings:
    trust_anchors: tuple[x509.Certificate, ...] = ()
    tsa_anchors: tuple[x509.Certificate, ...] = ()
    max_document_bytes: int = 512 * 1024  # decoded; keep its Base64 (4/3 of it) under [server] max_body_bytes
    max_certificates: int = 20
    revocation_timeout_seconds: float = 10.0
    # A response with no nextUpdate is kept this long; one with nextUpdate until then, at most max.
    revocation_default_cache_seconds: float = 300.0
    revocation_max_cache_seconds: float = 24 * 3600.0
    extra: dict[str, Any] = field(default_factory=dict, repr=False)


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
    seen: dict[bytes, x509.Certificate] = {}
    for cert in certs:
        seen.setdefault(cert.sha256, cert)
    return tuple(seen.values())


def load_settings(config: Config) -> ValidationSettings:
    section = config.section("validation")
    anchors = _read_anchor_paths(config.directory, list(section.get("trust_anchors", [])), "trust_anchors")
    if section.get("ca_anchors", True):
        anchors += ca_anchors(config)
    tsa = section.get("tsa_anchors")
    tsa_anchors = _read_anchor_paths(config.directory, list(tsa), "tsa_anchors") if tsa is not None else anchors
    known = {"trust_anchors", "tsa_anchors", "ca_anchors"}
    numbers = {k: section[k] for k in ("max_document_bytes", "max_certificates", "revocation_timeout_seconds",
                                       "revocation_default_cache_seconds", "revocation_max_cache_seconds") if k in section}
    unknown = set(section) - known - set(numbers)
    if unknown:
        raise ConfigError(f"[validation] unknown settings: {', '.join(sorted(unknown))}")
    return ValidationSettings(trust_anchors=_unique(anchors), tsa_anchors=_unique(tsa_anchors), **numbers)
