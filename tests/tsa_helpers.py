"""The test PKI (fixtures/certomancer.yml) and the TSA servers the timestamp tests run.

Everything here is real: certomancer builds the certificates and signs the tokens, and each
TSA is an aiohttp server on its own loopback port, so a test can stop one TSA while the
others keep answering. The servers run on an event loop in a background thread: the tests'
own loop is sometimes blocked (``Deployment.start`` polls synchronously) and the rssp server
under test must still reach its TSAs, OCSP responder and CRLs then.

A :class:`TsaServer` answers ``POST /<mode>`` per :meth:`TestPki.respond`: ``ok`` is a
correct TSA; the other modes misbehave in one precise way each (another imprint, another
nonce, a signer outside the anchor, a rejection status, ...).
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import ssl
import threading
from collections import Counter
from collections.abc import Coroutine
from pathlib import Path
from typing import Any

from aiohttp import web
from asn1crypto import cms, pem, tsp
from certomancer.integrations.aiohttp_animator import build_animator_app
from certomancer.registry import ArchLabel, CertLabel, CertomancerConfig, KeyLabel, ServiceLabel
from certomancer.services import TimeStamper
from cryptography import x509 as cx509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from rssp.devpki import CERTOMANCER_POLICY, free_port, write_keys
from tsa_clients.verify import TimeStampResp

FIXTURE = Path(__file__).resolve().parent.parent / "fixtures" / "certomancer.yml"
KEYS = {"root": "ec", "interm": "ec", "tsa-ec": "ec", "tsa-rsa": "rsa", "ocsp": "ec",
        "rogue-root": "ec", "rogue-tsa": "ec"}
POLICY = CERTOMANCER_POLICY
BAD_MODES = ("bad-imprint", "bad-nonce", "rogue", "rejection", "noncrit-eku", "wrong-policy", "stale",
             "bad-signature", "ess-mismatch", "garbage")


class TestPki:
    """The fixture PKI with freshly generated keys, its URLs pointing at ``prefix``."""

    __test__ = False  # not a pytest class

    def __init__(self, key_dir: Path, prefix: str) -> None:
        if not key_dir.exists():
            write_keys(key_dir, KEYS)
        self.config = CertomancerConfig.from_file(str(FIXTURE), key_search_dir=str(key_dir),
                                                  external_url_prefix=prefix)
        self.arch = self.config.get_pki_arch(ArchLabel("rssp-test"))
        self.rogue = self.config.get_pki_arch(ArchLabel("rogue"))
        self._stampers: dict[str, TimeStamper] = {}

    def cert(self, label: str, arch: Any = None) -> Any:
        return (arch or self.arch).get_cert(CertLabel(label))

    def write_root(self, path: Path) -> Path:
        path.write_bytes(pem.armor("CERTIFICATE", self.cert("root").dump()))
        return path

    def stamper(self, label: str = "tsa-ec", **kwargs: Any) -> TimeStamper:
        """certomancer's own TSA object (cached), or a variant built from the same keys."""
        if not kwargs and label in self._stampers:
            return self._stampers[label]
        arch = self.rogue if label.startswith("rogue") else self.arch
        if not kwargs:
            stamper = arch.service_registry.summon_timestamper(ServiceLabel(label))
            self._stampers[label] = stamper
            return stamper
        key = kwargs.pop("key", label)
        embed = [self.cert("interm")] if arch is self.arch else [self.cert("rogue-root", self.rogue)]
        return TimeStamper(tsa_cert=self.cert(label, arch), tsa_key=arch.key_set.get_private_key(KeyLabel(key)),
                           certs_to_embed=embed, **kwargs)

    # ------------------------------------------------------------------ answers, correct and not

    def respond(self, mode: str, req: tsp.TimeStampReq, label: str = "tsa-ec") -> bytes:
        if mode == "ok":
            return self.stamper(label).request_tsa_response(req).dump()
        if mode == "garbage":
            return b"\x30\x03\x02\x01\x00 this is not a TimeStampResp"
        if mode == "rejection":
            return TimeStampResp({"status": {"status": "rejection", "status_string": ["policy not accepted"],
                                             "fail_info": tsp.PKIFailureInfo({"unaccepted_policy"})}}).dump()
        if mode == "bad-imprint":
            imprint = req["message_imprint"]
            digest = bytes(b ^ 0x5A for b in imprint["hashed_message"].native)
            return self.stamper().request_tsa_response(_request(imprint["hash_algorithm"], digest,
                                                                req["nonce"].native)).dump()
        if mode == "bad-nonce":
            imprint = req["message_imprint"]
            return self.stamper().request_tsa_response(_request(imprint["hash_algorithm"],
                                                                imprint["hashed_message"].native,
                                                                req["nonce"].native + 1)).dump()
        if mode == "rogue":
            return self.stamper("rogue-tsa").request_tsa_response(req).dump()
        if mode == "noncrit-eku":
            return self.stamper("tsa-ec-noncrit", key="tsa-ec").request_tsa_response(req).dump()
        if mode == "wrong-policy":
            return self.stamper("tsa-ec", policy=tsp.ObjectIdentifier("1.2.3.4.5.6")).request_tsa_response(req).dump()
        if mode == "stale":
            then = dt.datetime.now(dt.UTC) - dt.timedelta(hours=2)
            return self.stamper("tsa-ec", fixed_dt=then).request_tsa_response(req).dump()
        if mode == "bad-signature":
            return self._tampered(req, self._flip_signature)
        if mode == "ess-mismatch":
            return self._tampered(req, self._swap_to_twin)
        raise ValueError(mode)

    def _tampered(self, req: tsp.TimeStampReq, change: Any) -> bytes:
        resp = tsp.TimeStampResp.load(self.stamper().request_tsa_response(req).dump())
        signed_data = resp["time_stamp_token"]["content"]
        change(signed_data)
        return resp.dump(force=True)

    @staticmethod
    def _flip_signature(signed_data: cms.SignedData) -> None:
        info = signed_data["signer_infos"][0]
        sig = bytearray(info["signature"].native)
        sig[len(sig) // 2] ^= 0x01
        info["signature"] = bytes(sig)

    def _swap_to_twin(self, signed_data: cms.SignedData) -> None:
        """Same key, another certificate: the signature verifies, the ESSCertID must not match."""
        twin = self.cert("tsa-ec-twin")
        signed_data["certificates"] = [twin, self.cert("interm")]
        signed_data["signer_infos"][0]["sid"] = cms.SignerIdentifier({"issuer_and_serial_number": {
            "issuer": twin.issuer, "serial_number": twin.serial_number}})


def _request(hash_algorithm: Any, digest: bytes, nonce: int) -> tsp.TimeStampReq:
    return tsp.TimeStampReq({"version": "v1", "message_imprint": {"hash_algorithm": hash_algorithm,
                                                                   "hashed_message": digest},
                             "nonce": nonce, "cert_req": True})


# ---------------------------------------------------------------------- servers in a background loop

class ServerThread:
    """An asyncio loop in a daemon thread, for servers that must answer while the test loop is blocked."""

    def __init__(self) -> None:
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, name="tsa-servers", daemon=True)
        self.thread.start()

    def run(self, coro: Coroutine[Any, Any, Any], timeout: float = 30) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, self.loop).result(timeout)

    def close(self) -> None:
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(timeout=10)


class HttpServer:
    """An aiohttp app on a fixed loopback port that can be stopped and started again."""

    def __init__(self, thread: ServerThread, app: web.Application, port: int | None = None,
                 ssl_context: ssl.SSLContext | None = None) -> None:
        self.thread, self.app, self.ssl = thread, app, ssl_context
        self.port = port or free_port()
        self.runner: web.AppRunner | None = None
        self.thread.run(self._setup())

    async def _setup(self) -> None:
        self.runner = web.AppRunner(self.app, access_log=None, shutdown_timeout=0.5)
        await self.runner.setup()

    @property
    def url(self) -> str:
        return f"{'https' if self.ssl else 'http'}://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.thread.run(self._start())

    async def _start(self) -> None:
        assert self.runner is not None
        await web.TCPSite(self.runner, "127.0.0.1", self.port, ssl_context=self.ssl).start()

    def stop(self) -> None:
        """Close the listening socket and every open connection: the TSA is gone."""
        self.thread.run(self._stop())

    async def _stop(self) -> None:
        assert self.runner is not None
        for site in list(self.runner.sites):
            await site.stop()
        server = self.runner.server
        if server is not None:
            await server.shutdown(0.1)

    def close(self) -> None:
        if self.runner is not None:
            self.thread.run(self.runner.cleanup())
            self.runner = None


def animator(thread: ServerThread, pki: TestPki, port: int) -> HttpServer:
    """certomancer's animator (OCSP, CRLs, cert repos and TSAs of the fixture PKI) on ``port``."""
    server = HttpServer(thread, build_animator_app(pki.config.pki_archs, with_web_ui=False), port)
    server.start()
    return server


class TsaServer(HttpServer):
    """One TSA: ``POST /<mode>`` answers per :meth:`TestPki.respond`; counts what it was asked."""

    def __init__(self, thread: ServerThread, pki: TestPki, label: str = "tsa-ec", *,
                 basic_auth: tuple[str, str] | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.pki, self.label, self.hits = pki, label, Counter[str]()
        self.expected_auth = ("Basic " + base64.b64encode(":".join(basic_auth).encode()).decode()
                              if basic_auth else None)
        app = web.Application()
        app.router.add_post("/{mode}", self._handle)
        super().__init__(thread, app, ssl_context=ssl_context)
        self.start()

    async def _handle(self, request: web.Request) -> web.Response:
        mode = request.match_info["mode"]
        if self.expected_auth and request.headers.get("Authorization") != self.expected_auth:
            return web.Response(status=401, headers={"WWW-Authenticate": 'Basic realm="tsa"'})
        if request.content_type != "application/timestamp-query":
            return web.Response(status=415)
        req = tsp.TimeStampReq.load(await request.read())
        self.hits[mode] += 1
        body = self.pki.respond(mode, req, self.label)
        return web.Response(body=body, content_type="application/timestamp-reply")


# ---------------------------------------------------------------------- TLS material for an mTLS TSA

def tls_material(directory: Path) -> dict[str, Path]:
    """A throwaway CA, a server certificate for 127.0.0.1 and a client certificate (all P-256)."""
    directory.mkdir(parents=True, exist_ok=True)
    now = dt.datetime.now(dt.UTC)
    ca_key = ec.generate_private_key(ec.SECP256R1())
    ca_name = cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, "rssp test TLS CA")])
    ca = (cx509.CertificateBuilder().subject_name(ca_name).issuer_name(ca_name).public_key(ca_key.public_key())
          .serial_number(1).not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30))
          .add_extension(cx509.BasicConstraints(ca=True, path_length=None), critical=True)
          .sign(ca_key, hashes.SHA256()))

    def leaf(name: str, serial: int, server: bool) -> tuple[Any, Any]:
        key = ec.generate_private_key(ec.SECP256R1())
        builder = (cx509.CertificateBuilder()
                   .subject_name(cx509.Name([cx509.NameAttribute(NameOID.COMMON_NAME, name)]))
                   .issuer_name(ca_name).public_key(key.public_key()).serial_number(serial)
                   .not_valid_before(now - dt.timedelta(days=1)).not_valid_after(now + dt.timedelta(days=30)))
        if server:
            import ipaddress

            builder = builder.add_extension(cx509.SubjectAlternativeName(
                [cx509.IPAddress(ipaddress.ip_address("127.0.0.1"))]), critical=False)
        return key, builder.sign(ca_key, hashes.SHA256())

    paths = {}
    for name, (key, cert) in {"server": leaf("127.0.0.1", 2, True), "client": leaf("rssp", 3, False)}.items():
        paths[f"{name}_key"] = directory / f"{name}.key.pem"
        paths[f"{name}_key"].write_bytes(key.private_bytes(serialization.Encoding.PEM,
                                                           serialization.PrivateFormat.PKCS8,
                                                           serialization.NoEncryption()))
        paths[f"{name}_cert"] = directory / f"{name}.pem"
        paths[f"{name}_cert"].write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    paths["ca"] = directory / "ca.pem"
    paths["ca"].write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    return paths


def mtls_server_context(paths: dict[str, Path]) -> ssl.SSLContext:
    """TLS 1.2+ and a client certificate from the test CA required."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(paths["server_cert"], paths["server_key"])
    context.load_verify_locations(paths["ca"])
    context.verify_mode = ssl.CERT_REQUIRED
    return context
