"""validates/*: what a caller's certificate or document can make rssp fetch (issue #20, finding 3).

Any service token may submit a certificate, and every URL in it is the caller's choice: its
caIssuers URL is read before anything is trusted, and its OCSP and CRL URLs once the path is
built. rssp fetches only what ``[validation] fetch_allow`` (plus the anchors' own URLs and
a development instance's test PKI) allows, follows no redirect out of it, cuts answers off at
``max_fetch_bytes``, and chases caIssuers no deeper than ``max_issuer_depth``; a refused fetch
is an ETSI indication, never an error.

The production instance here trusts the corpus root and allows exactly two loopback prefixes:
the corpus PKI's services and ``/allowed/`` on a helper server (which redirects to the trap,
streams endless answers, or serves an endless caIssuers chain). The trap is a plain socket
listener on another loopback port: certificates name it for caIssuers, OCSP and CRL, and it
must never see a connection.
"""

from __future__ import annotations

import asyncio
import socket
import threading
from dataclasses import dataclass, field
from typing import Any

import pytest
from aiohttp import web
from certomancer.integrations.aiohttp_animator import build_animator_app
from client import CSC
from cryptography.hazmat.primitives.asymmetric import ec
from deployment import Deployment
from tsa_helpers import HttpServer, ServerThread
from validation_corpus import TEXT, ValidationPki, b64, run_apart, validation_instance
from validation_hostile import named_cert

from rssp.devpki import free_port

STREAMED = 256 * 1024 * 1024  # what the /huge/ answers would send in full
MAX_FETCH_BYTES = 1024 * 1024
CUT_OFF = 64 * 1024 * 1024  # sent before the client hung up, socket buffers included: far below STREAMED
MAX_ISSUER_DEPTH = 4  # the default


class Listener:
    """A plain TCP listener on a free loopback port that counts connections and closes them."""

    def __init__(self) -> None:
        self.sock = socket.create_server(("127.0.0.1", 0))
        self.port = self.sock.getsockname()[1]
        self.connections = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                conn, _addr = self.sock.accept()
            except OSError:
                return
            self.connections += 1
            conn.close()

    def close(self) -> None:
        self.sock.close()


@dataclass
class Helper:
    """The allowed helper server: what it was asked, and how much of each endless answer it sent."""

    trap_port: int
    base: str
    hits: dict[str, int] = field(default_factory=dict)
    sent: dict[str, int] = field(default_factory=dict)
    streaming: int = 0  # endless answers still being written (a hung-up client is noticed at the next write)
    key: ec.EllipticCurvePrivateKey = field(default_factory=lambda: ec.generate_private_key(ec.SECP256R1()))

    def app(self) -> web.Application:
        @web.middleware
        async def count(request: web.Request, handler: Any) -> web.StreamResponse:
            self.hits[request.path] = self.hits.get(request.path, 0) + 1
            return await handler(request)

        app = web.Application(middlewares=[count])
        app.router.add_route("*", "/allowed/redirect/{tail:.*}", self.redirect)
        app.router.add_route("*", "/allowed/huge/{tail:.*}", self.huge)
        app.router.add_get("/allowed/chain/{n:[0-9]+}.crt", self.chain)
        return app

    async def redirect(self, request: web.Request) -> web.Response:
        """To the trap: 307 keeps a POST a POST (OCSP), 302 for GET (CRL, certificates)."""
        target = f"http://127.0.0.1:{self.trap_port}/{request.match_info['tail']}"
        raise (web.HTTPTemporaryRedirect if request.method == "POST" else web.HTTPFound)(target)

    async def huge(self, request: web.Request) -> web.StreamResponse:
        """An answer of STREAMED bytes, chunked (no Content-Length to refuse it by)."""
        await request.read()
        resp = web.StreamResponse(headers={"Content-Type": "application/octet-stream"})
        await resp.prepare(request)
        chunk = b"\x30" * (1024 * 1024)
        sent = 0
        self.streaming += 1
        try:
            while sent < STREAMED:
                await resp.write(chunk)
                sent += len(chunk)
                self.sent[request.path] = sent
            await resp.write_eof()
        except (ConnectionError, RuntimeError):
            pass  # the client hung up
        finally:
            self.streaming -= 1
        return resp

    async def streams_done(self) -> None:
        """Until every endless answer has noticed its client hung up (a safety bound only)."""
        deadline = asyncio.get_running_loop().time() + 30
        while self.streaming and asyncio.get_running_loop().time() < deadline:
            await asyncio.sleep(0.02)
        assert self.streaming == 0, "an endless answer is still being written"

    async def chain(self, request: web.Request) -> web.Response:
        """Certificate n claims to be issued by n+1, whose certificate is one URL further: no end."""
        n = int(request.match_info["n"])
        cert = named_cert(self.key, f"chain {n}", f"chain {n + 1}", ca_issuers=f"{self.base}/chain/{n + 1}.crt")
        return web.Response(body=cert.dump(), content_type="application/pkix-cert")

    def leaf(self) -> bytes:
        return named_cert(self.key, "chain leaf", "chain 0", ca_issuers=f"{self.base}/chain/0.crt").dump()


@dataclass
class Env:
    dep: Deployment
    pki: ValidationPki
    trap: Listener
    helper: Helper
    docs: dict[str, bytes]


async def make_docs(pki: ValidationPki) -> dict[str, bytes]:
    """For each source label: a CMS and a PDF, with the CA chain embedded and without it."""
    docs: dict[str, bytes] = {}
    for label in ("trap", "redirect", "huge"):
        for chain in (True, False):
            suffix = "chain" if chain else "alone"
            docs[f"cms-{label}-{suffix}"] = await pki.sign_cms(label, TEXT, detached=False, timestamp=False,
                                                               with_chain=chain)
            docs[f"pdf-{label}-{suffix}"] = await pki.sign_pdf(label, "B-B", with_chain=chain)
    return docs


@pytest.fixture(scope="module")
def fenv(tmp_path_factory):
    base = tmp_path_factory.mktemp("validates-fetch")
    thread, trap = ServerThread(), Listener()
    pki_port, helper_port = free_port(), free_port()
    allowed = f"http://127.0.0.1:{helper_port}/allowed"
    helper = Helper(trap.port, allowed)
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{pki_port}", sources={
        "trap": f"http://127.0.0.1:{trap.port}", "redirect": f"{allowed}/redirect", "huge": f"{allowed}/huge"})
    servers = [HttpServer(thread, build_animator_app(pki.config.pki_archs, with_web_ui=False), pki_port),
               HttpServer(thread, helper.app(), helper_port)]
    try:
        for server in servers:
            server.start()
        docs = run_apart(make_docs(pki))
        dep = validation_instance(base / "instance", pki, {
            "fetch_allow": [f"http://127.0.0.1:{pki_port}/val/", f"{allowed}/"], "max_fetch_bytes": MAX_FETCH_BYTES})
        try:
            yield Env(dep, pki, trap, helper, docs)
        finally:
            dep.stop()
    finally:
        for server in servers:
            server.close()
        thread.close()
        trap.close()


class Caller:
    def __init__(self, csc: CSC, env: Env, token: str) -> None:
        self.csc, self.env, self.token = csc, env, token

    async def call(self, method: str, body: dict[str, Any]) -> dict[str, Any]:
        status, data = await self.csc.call(method, body, self.token)
        assert status == 200, data  # not a 500, not a 400 "could not be processed"
        return data

    async def cert(self, label: str, *, chain: bool) -> dict[str, Any]:
        certs = [self.env.pki.cert(label), *([self.env.pki.cert("interm")] if chain else [])]
        return await self.call("validates/validCert", {"certificates": [b64(c.dump()) for c in certs]})

    async def submit(self, label: str, form: str, chain: bool) -> dict[str, Any]:
        """``form``: cert (validCert), cms or pdf (validSign); the answer's (indication, sub-indication)."""
        if form == "cert":
            body = await self.cert(label, chain=chain)
        else:
            body = (await self.call("validates/validSign", {
                "document": b64(self.env.docs[f"{form}-{label}-{'chain' if chain else 'alone'}"])}))["signatures"][0]
        return body


@pytest.fixture
async def caller(http, fenv) -> Caller:
    csc = CSC(http, fenv.dep)
    return Caller(csc, fenv, await csc.token("alice"))


# Without the chain, path building asks the caIssuers URL; with it, the path is built and revocation
# (OCSP, then the CRL) is asked. Refused: no path, or no revocation data (a chain failure, not TRY_LATER).
NO_PATH = ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND")
NO_REVOCATION = ("INDETERMINATE", "CERTIFICATE_CHAIN_GENERAL_FAILURE")
CASES = [(form, chain) for form in ("cert", "cms", "pdf") for chain in (False, True)]
IDS = [f"{form}-{'chain' if chain else 'alone'}" for form, chain in CASES]


def indication(body: dict[str, Any]) -> tuple[str, str | None]:
    return body["indication"], body.get("subIndication")


@pytest.mark.parametrize(("form", "chain"), CASES, ids=IDS)
async def test_loopback_trap_receives_nothing(caller, fenv, form, chain):
    """caIssuers, OCSP and CRL URLs on a loopback port no one allowed: never connected to."""
    body = await caller.submit("trap", form, chain)
    assert indication(body) == (NO_REVOCATION if chain else NO_PATH), body
    assert fenv.trap.connections == 0, "rssp connected to the trap"


@pytest.mark.parametrize(("form", "chain"), CASES, ids=IDS)
async def test_redirect_out_of_the_allowed_prefix_not_followed(caller, fenv, form, chain):
    """The allowed server answers 302/307 to the trap: rssp asked it, and went no further."""
    asked = dict(fenv.helper.hits)
    body = await caller.submit("redirect", form, chain)
    assert indication(body) == (NO_REVOCATION if chain else NO_PATH), body
    paths = ["/allowed/redirect/ocsp", "/allowed/redirect/crl"] if chain else ["/allowed/redirect/issuer.crt"]
    assert all(fenv.helper.hits.get(p, 0) > asked.get(p, 0) for p in paths), fenv.helper.hits
    assert fenv.trap.connections == 0, "rssp connected to the trap"


@pytest.mark.parametrize("chain", [False, True], ids=["caIssuers", "ocsp-and-crl"])
async def test_oversized_answer_cut_off(caller, fenv, chain):
    """A 256 MiB answer from an allowed URL: read up to max_fetch_bytes, the connection dropped."""
    await fenv.helper.streams_done()  # the other case's answers, so that their last counts land before the clear
    fenv.helper.sent.clear()
    body = await caller.cert("huge", chain=chain)
    assert indication(body) == (NO_REVOCATION if chain else NO_PATH), body
    await fenv.helper.streams_done()
    paths = ["/allowed/huge/ocsp", "/allowed/huge/crl"] if chain else ["/allowed/huge/issuer.crt"]
    assert set(fenv.helper.sent) == set(paths), fenv.helper.sent
    assert all(sent < CUT_OFF for sent in fenv.helper.sent.values()), fenv.helper.sent


async def test_endless_issuer_chain_is_not_chased(caller, fenv):
    """Each fetched certificate names a further caIssuers URL: at most max_issuer_depth are fetched."""
    body = await caller.call("validates/validCert", {"certificates": [b64(fenv.helper.leaf())]})
    assert indication(body) == NO_PATH, body
    fetched = sum(n for path, n in fenv.helper.hits.items() if path.startswith("/allowed/chain/"))
    assert 1 <= fetched <= MAX_ISSUER_DEPTH, fenv.helper.hits


async def test_dev_instance_fetches_only_its_test_pki(csc, dep, fenv):
    """A development instance allows its own test PKI on loopback (test_validates: validated live),
    not the rest of loopback: the trap's caIssuers URL is refused there too."""
    token = await csc.token("alice")
    status, body = await csc.call("validates/validCert", {"certificates": [b64(fenv.pki.cert("trap").dump())]}, token)
    assert status == 200 and indication(body) == NO_PATH, body
    assert fenv.trap.connections == 0, "rssp connected to the trap"
