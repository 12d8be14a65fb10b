"""Real components for the factor tests (#14): an SMTP relay, an OpenID Provider, a deployment using both.

- :class:`SmtpRelay`: aiosmtpd on loopback, STARTTLS required (a certificate from a CA made
  here, which rssp is told to trust), AUTH required, every message kept for the test to read;
  or implicit TLS (``tls=True``).
- :class:`TestOp`: panva's oidc-provider (npm, tests/oidc_op, installed by scripts/test.sh) in
  node on loopback, with rssp registered as its client.
- :func:`factor_deployment`: an rssp instance of its own (``rssp init``, users, rssp.toml with
  ``[smtp]``, ``[oob]``, ``[oidc.testop]`` and ``public_url`` on ``localhost`` for WebAuthn),
  sealed and served by ``rssp serve --workers 2``.
"""

from __future__ import annotations

import asyncio
import datetime
import email
import email.policy
import ipaddress
import json
import os
import re
import secrets
import signal
import ssl
import subprocess
import threading
import time
import tomllib
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import tomli_w
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import AuthResult, LoginPassword
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from deployment import Cred, Deployment, _new_deployment, free_port

OP_DIR = Path(__file__).parent / "oidc_op"
SMTP_USER, SMTP_PASSWORD = "rssp-relay", "relay-password-" + "x" * 8
CALLBACK = "/csc/v2/oauth2/oidc/callback"


# ============================================================================ a certificate for the relay

def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)])


def make_tls(directory: Path) -> tuple[Path, Path, Path]:
    """A CA and a server certificate for localhost / 127.0.0.1: (ca.pem, cert.pem, key.pem)."""
    now = datetime.datetime.now(datetime.UTC)
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca = (x509.CertificateBuilder().subject_name(_name("rssp test relay CA")).issuer_name(_name("rssp test relay CA"))
          .public_key(ca_key.public_key()).serial_number(x509.random_serial_number())
          .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
          .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
          .add_extension(x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True)
          .sign(ca_key, hashes.SHA256()))
    cert = (x509.CertificateBuilder().subject_name(_name("localhost")).issuer_name(ca.subject)
            .public_key(key.public_key()).serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1)).not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost"),
                                                        x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                           critical=False)
            .sign(ca_key, hashes.SHA256()))
    paths = directory / "relay-ca.pem", directory / "relay-cert.pem", directory / "relay-key.pem"
    paths[0].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    paths[1].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths[2].write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    return paths


# ============================================================================ the SMTP relay

@dataclass
class Mail:
    to: list[str]
    subject: str
    text: str


class _Handler:
    def __init__(self, relay: SmtpRelay) -> None:
        self.relay = relay

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        msg = email.message_from_bytes(envelope.content, policy=email.policy.default)
        body = msg.get_body(preferencelist=("plain",))
        self.relay.add(Mail(list(envelope.rcpt_tos), str(msg["Subject"]), body.get_content() if body else ""),
                       session.authenticated, session.ssl is not None)
        return "250 OK"


@dataclass
class SmtpRelay:
    """aiosmtpd on 127.0.0.1: STARTTLS and AUTH required (or TLS from the start with ``tls``)."""

    directory: Path
    tls: bool = False
    port: int = 0
    mails: list[Mail] = field(default_factory=list)
    plain_deliveries: int = 0  # messages that arrived without TLS or AUTH (must stay 0)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _controller: Controller | None = None

    def start(self) -> SmtpRelay:
        self.ca, cert, key = make_tls(self.directory)
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(cert, key)
        self.port = free_port()
        kwargs: dict[str, Any] = {"authenticator": self._authenticate, "auth_required": True,
                                  "auth_require_tls": not self.tls}  # aiosmtpd knows TLS only from STARTTLS
        if self.tls:
            kwargs["ssl_context"] = context
        else:
            kwargs.update(tls_context=context, require_starttls=True)
        self._controller = Controller(_Handler(self), hostname="127.0.0.1", port=self.port, **kwargs)
        self._controller.start()
        return self

    def stop(self) -> None:
        if self._controller is not None:
            self._controller.stop()

    @staticmethod
    def _authenticate(server: Any, session: Any, envelope: Any, mechanism: str, data: Any) -> AuthResult:
        ok = isinstance(data, LoginPassword) and (data.login, data.password) == (SMTP_USER.encode(),
                                                                                 SMTP_PASSWORD.encode())
        return AuthResult(success=ok)

    def add(self, mail: Mail, authenticated: bool, tls: bool) -> None:
        with self._lock:
            self.mails.append(mail)
            if not (authenticated and (tls or self.tls)):
                self.plain_deliveries += 1

    def count(self, to: str) -> int:
        with self._lock:
            return sum(1 for m in self.mails if to in m.to)

    async def next_mail(self, to: str, after: int, timeout: float = 60) -> Mail:
        """The first message to ``to`` beyond the ``after`` ones it had (a safety timeout, not a timing test)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                mine = [m for m in self.mails if to in m.to]
            if len(mine) > after:
                return mine[after]
            await asyncio.sleep(0.05)
        raise AssertionError(f"no e-mail to {to} arrived")


def code_in(mail: Mail) -> str:
    match = re.search(r"^\s{4}(\d{6,10})\s*$", mail.text, re.MULTILINE)
    assert match, mail.text
    return match.group(1)


def link_in(mail: Mail) -> str:
    match = re.search(r"(http\S+/signer/approve\?token=\S+)", mail.text)
    assert match, mail.text
    return match.group(1)


# ============================================================================ the OpenID Provider

@dataclass
class TestOp:
    """oidc-provider in node: issuer http://127.0.0.1:PORT, rssp registered as client ``rssp``."""

    redirect_uris: list[str]
    port: int = 0
    secret: str = field(default_factory=lambda: secrets.token_urlsafe(32))
    proc: subprocess.Popen | None = None

    @property
    def issuer(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, log: Path) -> TestOp:
        if not (OP_DIR / "node_modules" / "oidc-provider").is_dir():
            raise RuntimeError("tests/oidc_op is not installed: run scripts/test.sh (npm ci --prefix tests/oidc_op)")
        self.port = free_port()
        config = {"port": self.port, "issuer": self.issuer, "clients": [
            {"client_id": "rssp", "client_secret": self.secret, "redirect_uris": self.redirect_uris}]}
        with open(log, "ab") as out:
            self.proc = subprocess.Popen(["node", str(OP_DIR / "op.mjs")],
                                         env={**os.environ, "OP_CONFIG": json.dumps(config)},
                                         stdout=out, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            try:
                with urllib.request.urlopen(f"{self.issuer}/.well-known/openid-configuration", timeout=2):
                    return self
            except OSError:
                time.sleep(0.2)
        raise RuntimeError(f"the test OP did not start: {log.read_text()[-2000:]}")

    def misbehave(self, mode: str) -> None:
        """The next token response only: ``wrong-aud``, ``foreign-key`` or ``replay``."""
        req = urllib.request.Request(f"{self.issuer}/test/mode", data=json.dumps({"mode": mode}).encode(),
                                     method="POST")
        with urllib.request.urlopen(req, timeout=10) as resp:
            assert resp.status == 204

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            self.proc.wait(timeout=20)


# ============================================================================ the deployment

@dataclass
class FactorDeployment:
    dep: Deployment
    smtp: SmtpRelay
    op: TestOp

    @property
    def page_base(self) -> str:
        """Where the browser goes: localhost, the WebAuthn relying party (an IP address cannot be one)."""
        return f"http://localhost:{self.dep.port}"

    def credential(self, name: str, user: str, *extra: str, level: int = 2, pin: str = "135790",
                   key: str = "ec-p256", multisign: int = 10) -> tuple[Cred, dict[str, Any]]:
        """``rssp credential create`` with ``extra`` factor options; the CLI's JSON output too."""
        done = self.dep.rssp("credential", "create", str(self.dep.directory), "--user", user, "--key", key,
                             "--level", str(level), "--pin", pin, "--multisign", str(multisign), *extra, "--json",
                             check=False)
        assert done.returncode == 0, done.stderr
        out = json.loads(done.stdout)
        cred = Cred(out["credentialID"], user, key, level, pin)
        self.dep.creds[name] = cred
        return cred, out

    def user(self, name: str) -> str:
        if name not in self.dep.passwords:
            self.dep.add_user(name, f"{name}-password")
        return name


def _configure(dep: Deployment, port: int, relay: SmtpRelay, op: TestOp) -> None:
    (dep.directory / "smtp-password").write_text(SMTP_PASSWORD)
    (dep.directory / "oidc-testop-secret").write_text(op.secret)
    path = dep.directory / "rssp.toml"
    raw = tomllib.loads(path.read_text())
    raw.setdefault("server", {})["public_url"] = f"http://localhost:{port}"
    raw["smtp"] = {"host": "localhost", "port": relay.port, "security": "starttls", "username": SMTP_USER,
                   "password_file": "smtp-password", "from": "rssp <no-reply@rssp.test>",
                   "cafile": str(relay.ca), "timeout_seconds": 20}
    raw["oob"] = {"sends_per_credential": 3, "sends_per_user": 5, "send_window_seconds": 3600, "code_digits": 8}
    raw["oidc"] = {"testop": {"issuer": op.issuer, "client_id": "rssp", "client_secret_file": "oidc-testop-secret",
                              "label": "Test OP", "max_age_seconds": 300}}
    path.write_text(tomli_w.dumps(raw))
    dep.seal_config()


def factor_deployment(directory: Path, database_url: str | None) -> FactorDeployment:
    port = free_port()
    dep = _new_deployment(directory, database_url)
    relay = SmtpRelay(directory.parent).start()
    op = TestOp([f"http://localhost:{port}{CALLBACK}"]).start(directory.parent / "op.log")
    _configure(dep, port, relay, op)
    dep.start(workers=2, port=port)
    return FactorDeployment(dep, relay, op)


# ============================================================================ an RA enrolling factors

async def ra_enroll(http: Any, fd: FactorDeployment, user: str, level: int, eids: list[dict[str, Any]],
                    expression: str | None = None) -> tuple[str, dict[str, Any]]:
    """generateKey, the CSR, the local CA's certificate, linkEid with ``eids``, linkCert: (credential ID,
    linkEid's answer). The order suits every level (level 3 needs the CSR before linkEid)."""
    import base64

    from manages_helpers import RA, local_ca_issue

    client_id, secret = fd.dep.manage_clients["local"]
    ra = RA(http, fd.dep, client_id, secret)
    await ra.login()
    gen = await ra.ok("manages/generateKey", {"userID": user, "keyAlgo": "1.2.840.10045.2.1",
                                              "curve": "1.2.840.10045.3.1.7", "level": level, "multisign": 10})
    cred_id = gen["credentialID"]
    csr = await ra.ok("manages/authorize", {"credentialID": cred_id, "subjectDN": f"CN={user}"})
    body: dict[str, Any] = {"credentialID": cred_id, "eids": eids}
    if expression:
        body["expression"] = expression
    linked = await ra.ok("manages/linkEid", body)
    chain = local_ca_issue(fd.dep, "local", base64.b64decode(csr["csr"]))
    await ra.ok("manages/linkCert", {"credentialID": cred_id,
                                     "certificates": [base64.b64encode(c).decode() for c in chain]})
    return cred_id, linked
