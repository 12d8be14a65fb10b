"""OpenSSL 3's ``openssl cmp`` mock server as a real CMP peer, inside a loopback-only netns.

The mock binds every interface (``-port`` takes no host), so it never runs in the host's
network namespace: :meth:`MockCmp.run` starts ``unshare -n sh -c 'ip link set lo up; ...'``
(tests run as root), launches the mock there, waits for its port, and runs the *client side*
(a Python snippet using ``ca_connectors.cmp``, or the whole ``rssp credential create --ca``
command) in the same namespace, where the mock's loopback is reachable. Nothing of it is
visible from the host; files (instance, certificates) are shared through the filesystem.

The mock answers every certificate request with the one ``-rsp_cert`` it was started with,
so a test issues that certificate for the exact HSM key first (it knows the key from
``manages/generateKey``), then starts the mock. When the key only exists once enrollment has
begun (``rssp credential create``), :data:`PRE_HOOK` wraps the connector's ``issue``: on the
CSR it issues the certificate for the CSR's key with the test root, starts the mock, and then
lets the real connector run the real CMP exchange.
"""

from __future__ import annotations

import base64
import json
import shlex
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from manages_helpers import REPO, RootCA

MOCK_PORT = 8090  # inside the namespace: nothing else listens there
REFERENCE = "rssp"


def pem_cert(der: bytes) -> bytes:
    return b"-----BEGIN CERTIFICATE-----\n" + base64.encodebytes(der) + b"-----END CERTIFICATE-----\n"


WAIT_PORT = f"""
import socket, time
for _ in range(200):
    try:
        socket.create_connection(("127.0.0.1", {MOCK_PORT}), 0.2).close(); break
    except OSError:
        time.sleep(0.05)
"""


@dataclass
class MockCmp:
    """A test CA with a CMP server certificate, its shared secret, and the mock's command line."""

    directory: Path
    secret: str = "cmp-shared-secret-1234"
    root: RootCA = field(default_factory=lambda: RootCA("Test CMP CA"))

    def __post_init__(self) -> None:
        d = self.directory
        d.mkdir(parents=True, exist_ok=True)
        self.root.write(d / "root.pem")
        self.root.write_key(d / "root.key")
        server_key = ec.generate_private_key(ec.SECP256R1())
        spki = server_key.public_key().public_bytes(serialization.Encoding.DER,
                                                    serialization.PublicFormat.SubjectPublicKeyInfo)
        (d / "srv.pem").write_bytes(pem_cert(self.root.issue(spki, "CN=Test CMP Server")))
        (d / "srv.key").write_bytes(server_key.private_bytes(serialization.Encoding.PEM,
                                                             serialization.PrivateFormat.PKCS8,
                                                             serialization.NoEncryption()))
        (d / "secret").write_text(self.secret + "\n")

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{MOCK_PORT}/pkix/"

    def server_command(self, rsp_cert: Path, extra: tuple[str, ...] = (), *, mac: bool = True) -> list[str]:
        """The mock; with ``mac`` it takes and sends MAC-protected messages, else signed ones."""
        d = self.directory
        secret = ["-srv_ref", REFERENCE, "-srv_secret", f"pass:{self.secret}"] if mac else []
        return ["openssl", "cmp", "-port", str(MOCK_PORT), *secret, "-srv_cert", str(d / "srv.pem"),
                "-srv_key", str(d / "srv.key"), "-srv_trusted", str(d / "root.pem"), "-rsp_cert", str(rsp_cert),
                "-rsp_capubs", str(d / "root.pem"), *extra]

    def rsp_cert_for(self, spki_der: bytes, name: str = "rsp.pem", subject: str = "CN=Subscriber") -> Path:
        path = self.directory / name
        path.write_bytes(pem_cert(self.root.issue(spki_der, subject)))
        return path

    def connector_config(self) -> dict:
        """A CmpConnector configuration that talks to this mock with the shared secret (MAC)."""
        return {"url": self.url, "mac_secret_file": str(self.directory / "secret"), "reference": REFERENCE,
                "anchors": [str(self.directory / "root.pem")], "poll_seconds": 10}

    def signed_client_config(self, server_cert: str = "srv.pem") -> dict:
        """A CmpConnector configuration with signature protection: a client certificate from the root,
        and ``server_cert`` (a file of the mock's directory) as the certificate answers must be signed with."""
        client_key = ec.generate_private_key(ec.SECP256R1())
        client_spki = client_key.public_key().public_bytes(serialization.Encoding.DER,
                                                           serialization.PublicFormat.SubjectPublicKeyInfo)
        (self.directory / "client.pem").write_bytes(pem_cert(self.root.issue(client_spki, "CN=rssp RA client")))
        (self.directory / "client.key").write_bytes(client_key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()))
        return {"url": self.url, "client_cert": str(self.directory / "client.pem"),
                "client_key": str(self.directory / "client.key"), "server_cert": str(self.directory / server_cert),
                "anchors": [str(self.directory / "root.pem")]}

    def run(self, client: list[str], *, server: list[str] | None, env: dict[str, str] | None = None,
            timeout: float = 120) -> subprocess.CompletedProcess:
        """Run ``client`` in a fresh loopback-only netns, with ``server`` (the mock) started there first."""
        log = self.directory / "mock.log"
        start = ""
        if server is not None:
            start = (f"{shlex.join(server)} >>{shlex.quote(str(log))} 2>&1 & M=$!; "
                     f"{shlex.quote(sys.executable)} -c {shlex.quote(WAIT_PORT)}; ")
        script = (f"ip link set lo up || exit 97; {start}{shlex.join(client)}; rc=$?; "
                  + ("kill $M 2>/dev/null; wait $M 2>/dev/null; " if server is not None else "") + "exit $rc")
        return subprocess.run(["unshare", "-n", "sh", "-c", script], env=env, cwd=REPO, capture_output=True,
                              text=True, timeout=timeout)

    def enroll(self, config: dict, csr: Path, server: list[str]) -> dict:
        """Send ``csr`` through the CMP connector to the mock: {"certificate", "chain"} or {"error"}."""
        done = self.run([sys.executable, "-c", CLIENT, json.dumps(config), str(csr)], server=server)
        assert done.returncode == 0, done.stderr[-3000:] + self.mock_log()[-2000:]
        return json.loads(done.stdout.strip().splitlines()[-1])

    def mock_log(self) -> str:
        path = self.directory / "mock.log"
        return path.read_text(errors="replace") if path.exists() else ""


# ``python -c CLIENT CONFIG_JSON CSR_FILE``: one enrollment through ca_connectors.cmp, JSON out.
CLIENT = """
import asyncio, base64, json, sys
from ca_connectors.cmp import CmpConnector
from rssp.ca import CAError
async def main():
    connector = CmpConnector.from_config(json.loads(sys.argv[1]))
    try:
        issued = await connector.issue(open(sys.argv[2], "rb").read())
    except CAError as exc:
        print(json.dumps({"error": str(exc)})); return
    print(json.dumps({"certificate": base64.b64encode(issued.certificate).decode(),
                      "chain": [base64.b64encode(c).decode() for c in issued.chain]}))
asyncio.run(main())
"""


# Used as ``python -c PRE_HOOK MOCKDIR -- <rssp CLI arguments>`` inside the namespace.
PRE_HOOK = """
import subprocess, sys, time, json
from pathlib import Path
from cryptography import x509
from cryptography.hazmat.primitives import serialization
sys.path.insert(0, "tests")
from cmp_mock import MockCmp, WAIT_PORT, pem_cert
from manages_helpers import RootCA
import ca_connectors.cmp.client as cmp_client
from rssp import cli

mock_dir = Path(sys.argv[1])
extra = tuple(json.loads(sys.argv[2]))
root = RootCA.__new__(RootCA)
root.name = "Test CMP CA"
root.cert = x509.load_pem_x509_certificate((mock_dir / "root.pem").read_bytes())
root.key = serialization.load_pem_private_key((mock_dir / "root.key").read_bytes(), None)
mock = MockCmp.__new__(MockCmp)
mock.directory, mock.secret, mock.root = mock_dir, (mock_dir / "secret").read_text().strip(), root
original = cmp_client.CmpConnector.issue

original_for_key = cmp_client.CmpConnector.issue_for_key

async def issue_for_key_with_mock(self, csr_der, key):
    self._hooked_key = key
    return await issue_with_mock(self, csr_der)

async def issue_with_mock(self, csr_der, **kwargs):
    if getattr(self, "_mock_running", False):  # issue_for_key of a p10cr CA calls issue: mock already up
        return await original(self, csr_der, **kwargs)
    self._mock_running = True
    csr = x509.load_der_x509_csr(csr_der)
    spki = csr.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    rsp = mock.rsp_cert_for(spki, subject=csr.subject.rfc4514_string())
    log = open(mock_dir / "mock.log", "ab")
    proc = subprocess.Popen(mock.server_command(rsp, extra), stdout=log, stderr=subprocess.STDOUT)
    exec(WAIT_PORT)
    try:
        key = getattr(self, "_hooked_key", None)
        return await (original_for_key(self, csr_der, key) if key else original(self, csr_der, **kwargs))
    finally:
        proc.terminate(); proc.wait()

cmp_client.CmpConnector.issue = issue_with_mock
cmp_client.CmpConnector.issue_for_key = issue_for_key_with_mock
sys.exit(cli.main(sys.argv[3:]))
"""

# ``python -c CLIENT_FOR_KEY CONFIG_JSON KEY_PEM``: an ir/cr enrollment; the CRMF POP is signed by the
# key through the same SigningKeyRef interface the HSM-backed key uses in rssp.
CLIENT_FOR_KEY = """
import asyncio, base64, json, sys
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
from ca_connectors.cmp import CmpConnector
from rssp.ca import CAError, issue_with
from rssp.x509.builder import SigningKeyRef, build_csr, parse_subject
async def main():
    private = serialization.load_pem_private_key(open(sys.argv[2], "rb").read(), None)
    spki = private.public_key().public_bytes(serialization.Encoding.DER,
                                             serialization.PublicFormat.SubjectPublicKeyInfo)
    async def signer(digest):
        return private.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    key = SigningKeyRef(signer=signer, public_key_der=spki)
    csr = await build_csr(parse_subject("CN=Taro Yamada,C=JP"), key)
    try:
        issued = await issue_with(CmpConnector.from_config(json.loads(sys.argv[1])), csr, key)
    except CAError as exc:
        print(json.dumps({"error": str(exc)})); return
    print(json.dumps({"certificate": base64.b64encode(issued.certificate).decode()}))
asyncio.run(main())
"""
