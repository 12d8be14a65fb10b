"""The test PKI of a development instance: two TSAs, an OCSP responder and CRLs on loopback.

``rssp init DIR`` (without ``--production``) calls :func:`create`: it generates the keys
into ``DIR/devpki/keys`` (mode 0600, never shipped), writes a certomancer configuration
``DIR/devpki/certomancer.yml`` (root CA → intermediate CA → an ECDSA P-256 TSA, an RSA-2048
TSA and an OCSP responder; CRLs for both CAs), exports the root certificate as the TSAs'
trust anchor, and returns the ``[devpki]`` and ``[timestamps]`` tables for rssp.toml.

``rssp serve DIR`` calls :class:`DevPki` when ``[devpki] enabled = true``: one child process
(whatever ``--workers`` says) runs certomancer's aiohttp animator bound to 127.0.0.1 on the
port chosen at init time. The port is fixed because it is part of the OCSP and CRL URLs
inside the certificates. The child exits when the server stops, or when its parent dies.

Certificates are regenerated from the configuration by certomancer on every start; that is
harmless because trust is anchored on the root's name and key, which do not change.

certomancer (and the YAML it reads) is the ``devpki`` extra, not a runtime dependency: it is
imported only here, inside the functions that make or run the test PKI, so a production
instance serves without it, and :func:`require_extra` names the extra when it is missing.
"""

from __future__ import annotations

import importlib.util
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import tomllib
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from rssp.config import CONFIG_NAME
from rssp.errors import OperatorError

ARCH = "rssp-dev"
HOST = "127.0.0.1"
CERTOMANCER_POLICY = "1.3.6.1.4.1.4146.2.3"  # certomancer's TSAs always use this policy OID
KEYS = {"root": "ec", "interm": "ec", "tsa-ec": "ec", "tsa-rsa": "rsa", "ocsp": "ec"}
MISSING_EXTRA = ("the development PKI needs the devpki extra: pip install 'rssp[devpki]' "
                 "(or make a production instance: rssp init DIR --production)")


def require_extra() -> None:
    """Stop with a clear error, before anything is made or started, if certomancer is not installed."""
    try:
        found = importlib.util.find_spec("certomancer") is not None
    except ImportError:  # a parent package or an import hook refuses it
        found = False
    if not found:
        raise OperatorError(MISSING_EXTRA)


def write_keys(key_dir: Path, kinds: dict[str, str]) -> None:
    """Unencrypted PKCS#8 PEM keys, ``<label>.key.pem``, readable by the owner only."""
    key_dir.mkdir(parents=True, exist_ok=True, mode=0o700)
    for label, kind in kinds.items():
        key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
        pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                serialization.NoEncryption())
        fd = os.open(key_dir / f"{label}.key.pem", os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as fh:
            fh.write(pem)


def _stamp(moment: datetime) -> str:
    return moment.strftime("%Y-%m-%dT%H:%M:%S+0000")


def _ext(ext_id: str, value: Any = None, *, critical: bool = False, smart: dict[str, Any] | None = None
         ) -> dict[str, Any]:
    out: dict[str, Any] = {"id": ext_id}
    if critical:
        out["critical"] = True
    if smart is not None:
        out["smart-value"] = smart
    elif value is not None:
        out["value"] = value
    return out


def _key_usage(*bits: str) -> dict[str, Any]:
    return _ext("key_usage", critical=True, smart={"schema": "key-usage", "params": list(bits)})


def tsa_cert(issuer: str, validity: dict[str, str], *, ocsp: str | None, crl: str | None,
             eku_critical: bool = True) -> dict[str, Any]:
    """A TSU certificate as RFC 3161 §2.3 wants it: critical EKU with only timeStamping."""
    extensions = [_key_usage("digital_signature"), _ext("extended_key_usage", ["time_stamping"], critical=eku_critical)]
    if crl:
        extensions.append(_ext("crl_distribution_points", smart={"schema": "crl-dist-url",
                                                                  "params": {"crl-repo-names": [crl]}}))
    if ocsp:
        extensions.append(_ext("authority_information_access", smart={"schema": "aia-urls",
                                                                       "params": {"ocsp-responder-names": [ocsp]}}))
    return {"issuer": issuer, "validity": validity, "extensions": extensions}


def ca_cert(issuer: str, validity: dict[str, str], *, path_len: int | None = None, crl: str | None = None
            ) -> dict[str, Any]:
    constraints: dict[str, Any] = {"ca": True}
    if path_len is not None:
        constraints["path-len-constraint"] = path_len
    extensions = [_ext("basic_constraints", constraints, critical=True),
                  _key_usage("digital_signature", "key_cert_sign", "crl_sign")]
    if crl:
        extensions.append(_ext("crl_distribution_points", smart={"schema": "crl-dist-url",
                                                                  "params": {"crl-repo-names": [crl]}}))
    return {"issuer": issuer, "validity": validity, "extensions": extensions}


def pki_config(key_dir: str, prefix: str, now: datetime | None = None) -> dict[str, Any]:
    """The certomancer configuration of the development PKI (one architecture, ``rssp-dev``)."""
    now = now or datetime.now(UTC)
    start = now.replace(hour=0, minute=0, second=0, microsecond=0) - timedelta(days=1)
    validity = {"valid-from": _stamp(start), "valid-to": _stamp(start + timedelta(days=3650))}
    ocsp_cert = {"issuer": "interm", "validity": validity,
                 "extensions": [_key_usage("digital_signature"),
                                _ext("extended_key_usage", ["ocsp_signing"], critical=True),
                                _ext("ocsp_no_check")]}
    return {
        "external-url-prefix": prefix,
        "keysets": {ARCH: {"path-prefix": key_dir,
                           "keys": {label: {"path": f"{label}.key.pem"} for label in KEYS}}},
        "pki-architectures": {ARCH: {
            "keyset": ARCH,
            "entity-defaults": {"country-name": "JP", "organization-name": "rssp development PKI (not for production)"},
            "entities": {
                "root": {"common-name": "rssp Development Root CA"},
                "interm": {"common-name": "rssp Development Intermediate CA"},
                "tsa-ec": {"common-name": "rssp Development TSA (ECDSA P-256)"},
                "tsa-rsa": {"common-name": "rssp Development TSA (RSA-2048)"},
                "ocsp": {"common-name": "rssp Development OCSP Responder"},
            },
            "certs": {
                "root": {**ca_cert("root", validity), "subject-key": "root", "authority-key": "root"},
                "interm": ca_cert("root", validity, path_len=0, crl="root"),
                "tsa-ec": tsa_cert("interm", validity, ocsp="interm", crl="interm"),
                "tsa-rsa": tsa_cert("interm", validity, ocsp="interm", crl="interm"),
                "ocsp": ocsp_cert,
            },
            "services": {
                "ocsp": {"interm": {"for-issuer": "interm", "responder-cert": "ocsp", "signing-key": "ocsp"}},
                "crl-repo": {"root": {"for-issuer": "root", "signing-key": "root", "simulated-update-schedule": "P90D"},
                             "interm": {"for-issuer": "interm", "signing-key": "interm",
                                        "simulated-update-schedule": "P7D"}},
                "cert-repo": {"root": {"for-issuer": "root", "publish-issued-certs": True},
                              "interm": {"for-issuer": "interm", "publish-issued-certs": True}},
                "time-stamping": {"tsa-ec": {"signing-key": "tsa-ec", "signing-cert": "tsa-ec",
                                             "certs-to-embed": ["interm"]},
                                  "tsa-rsa": {"signing-key": "tsa-rsa", "signing-cert": "tsa-rsa",
                                              "certs-to-embed": ["interm"]}},
            },
        }},
    }


def free_port(host: str = HOST) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        port: int = s.getsockname()[1]
        return port


def _tsa_table(name: str, description: str, url: str, priority: int, default: bool) -> dict[str, Any]:
    return {
        "name": name, "description": description, "url": url, "policy_oid": CERTOMANCER_POLICY,
        "hash_algorithms": ["sha256", "sha384", "sha512"], "anchors": ["devpki/root.pem"],
        "priority": priority, "default": default,
        "accreditation": {"scheme": "none (development test PKI)", "accredited": False},
    }


def create(directory: Path, *, port: int | None = None) -> dict[str, Any]:
    """Make ``DIR/devpki`` and return the rssp.toml tables that describe and use it."""
    require_extra()
    import yaml  # certomancer's dependency: the devpki extra
    from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig

    port = port or free_port()
    prefix = f"http://{HOST}:{port}"
    pki_dir = directory / "devpki"
    write_keys(pki_dir / "keys", KEYS)
    config = pki_config("keys", prefix)
    (pki_dir / "certomancer.yml").write_text(
        "# rssp development PKI (certomancer); generated by 'rssp init'. Not for production.\n"
        + yaml.safe_dump(config, sort_keys=False), encoding="utf-8")
    arch = CertomancerConfig(config, key_search_dir=str(pki_dir)).get_pki_arch(ArchLabel(ARCH))
    from asn1crypto import pem

    (pki_dir / "root.pem").write_bytes(pem.armor("CERTIFICATE", arch.get_cert(CertLabel("root")).dump()))
    base = f"{prefix}/{ARCH}"
    return {
        "devpki": {
            "enabled": True, "host": HOST, "port": port, "config": "devpki/certomancer.yml", "arch": ARCH,
            "trust_anchors": ["devpki/root.pem"],
            "ocsp": [f"{base}/ocsp/interm"],
            "crl": [f"{base}/crls/root/latest.crl", f"{base}/crls/interm/latest.crl"],
        },
        "timestamps": {
            "cooldown_seconds": 30,
            "tsa": {
                "dev-ec": _tsa_table("rssp development TSA (ECDSA P-256)",
                                     "Test TSA of the bundled development PKI; tokens have no legal value.",
                                     f"{base}/tsa/tsa-ec", 10, True),
                "dev-rsa": _tsa_table("rssp development TSA (RSA-2048)",
                                      "Test TSA of the bundled development PKI; tokens have no legal value.",
                                      f"{base}/tsa/tsa-rsa", 20, False),
            },
        },
    }


# ---------------------------------------------------------------------- serving (child process)

def build_app(directory: Path, section: dict[str, Any]) -> Any:
    """certomancer's aiohttp animator for the instance's PKI (services only, no web UI)."""
    from certomancer.integrations.aiohttp_animator import build_animator_app
    from certomancer.registry import CertomancerConfig

    cfg_path = directory / section.get("config", "devpki/certomancer.yml")
    config = CertomancerConfig.from_file(str(cfg_path), key_search_dir=str(cfg_path.parent))
    return build_animator_app(config.pki_archs, with_web_ui=False, allow_time_override=False)


def _watch_parent(parent: int) -> None:
    """Exit when the rssp server that started us is gone (even if it was SIGKILLed)."""
    while os.getppid() == parent:
        time.sleep(1.0)
    os.kill(os.getpid(), signal.SIGTERM)


def main(argv: list[str] | None = None) -> None:
    """``python -m rssp.devpki DIR``: serve the development PKI until SIGTERM or parent exit."""
    from aiohttp import web

    directory = Path((argv or sys.argv[1:])[0])
    section = tomllib.loads((directory / CONFIG_NAME).read_text(encoding="utf-8")).get("devpki", {})
    threading.Thread(target=_watch_parent, args=(os.getppid(),), daemon=True).start()
    web.run_app(build_app(directory, section), host=section.get("host", HOST), port=int(section["port"]),
                print=None, access_log=None, handle_signals=True)


class DevPki:
    """The development PKI as a child process of ``rssp serve``."""

    def __init__(self, directory: Path, section: dict[str, Any]) -> None:
        self.directory, self.section = directory, section
        self.proc: subprocess.Popen[bytes] | None = None

    @classmethod
    def from_config(cls, directory: Path, section: dict[str, Any]) -> DevPki | None:
        """The PKI to run: enabled, and its keys here (a host joined with ``rssp init --join`` has none:
        the first host runs the PKI for all, on its fixed port)."""
        keys = (directory / section.get("config", "devpki/certomancer.yml")).parent / "keys"
        return cls(directory, section) if section.get("enabled") and keys.is_dir() else None

    def start(self, timeout: float = 30.0) -> None:
        require_extra()  # here, not as an exit of the child that would look like a port in use
        host, port = self.section.get("host", HOST), int(self.section["port"])
        self.proc = subprocess.Popen([sys.executable, "-m", "rssp.devpki", str(self.directory)])  # noqa: S603 - own argv
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise OperatorError(f"the development PKI exited at start-up (is {host}:{port} in use?)")
            try:
                socket.create_connection((host, port), timeout=0.5).close()
                return
            except OSError:
                time.sleep(0.1)
        self.stop()
        raise OperatorError(f"the development PKI did not start listening on {host}:{port}")

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        self.proc = None


if __name__ == "__main__":
    main()
