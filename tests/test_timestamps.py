"""Several TSAs (DESIGN §3.2): signatures/timestamp, timestamps/list, timestamps/info.

A production instance (``rssp init --production``) is given a pool of real TSAs run by this
module (tests/tsa_helpers.py): two correct ones on their own ports (``tsa-a``: ECDSA, HTTP
Basic, the default; ``tsa-b``: RSA, SHA-256 only), one over mutual TLS, a disabled one, and
one misbehaving TSA per way of misbehaving. The server runs one worker so that the pool's
health (per process) is what ``timestamps/info`` shows. Tokens are checked with pyHanko.

The development instance (``dep``, made by a plain ``rssp init``) must have working TSAs out
of the box: its test PKI is started by ``rssp serve``.
"""

from __future__ import annotations

import asyncio
import base64
import datetime as dt
import hashlib
import json
import os
import re
import secrets
import time
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from asn1crypto import cms, pem, tsp, x509
from client import CSC, SHA256, SHA384, SHA512, b64
from deployment import Deployment
from pyhanko.sign.validation.generic_cms import validate_tst_signed_data
from pyhanko_certvalidator import ValidationContext
from tsa_helpers import (
    BAD_MODES,
    POLICY,
    HttpServer,
    ServerThread,
    TestPki,
    TsaServer,
    animator,
    mtls_server_context,
    tls_material,
)

from rssp.devpki import DevPki, free_port

SHA3_256 = "2.16.840.1.101.3.4.2.8"
SHA1 = "1.3.14.3.2.26"
A_PASSWORD = "tsa-a-" + secrets.token_hex(8)
COOLDOWN = 1.0


@dataclass
class Env:
    dep: Deployment
    pki: TestPki
    root: x509.Certificate
    a: TsaServer
    b: TsaServer
    bad: TsaServer
    tls: TsaServer
    animator: HttpServer
    production_toml: dict[str, Any]

    def secrets_and_urls(self) -> list[str]:
        """What must never appear in an answer: upstream URLs, ports, credentials, key paths."""
        return [A_PASSWORD, "127.0.0.1", *(f":{s.port}" for s in (self.a, self.b, self.bad, self.tls, self.animator)),
                "tls/client", "password"]


def _tsa(url: str, root: Path, **extra: Any) -> dict[str, Any]:
    return {"url": url, "anchors": [str(root)], "policy_oid": POLICY, **extra}


def _pool_config(env: Env, root: Path, tls: dict[str, Path]) -> dict[str, Any]:
    tsas: dict[str, Any] = {
        "tsa-a": _tsa(f"{env.a.url}/ok", root, default=True, priority=1, username="rssp",
                      password_file="tsa-a-password", accuracy_seconds=1,
                      name={"en": "Test TSA A", "ja": "テスト時刻認証局A"},
                      description={"en": "ECDSA test TSA", "ja": "ECDSAのテストTSA"},
                      accreditation={"scheme": "JP-TSA (test)", "accredited": True,
                                     "authority": "Test Accreditation Body", "since": dt.date(2024, 4, 1)}),
        "tsa-b": _tsa(f"{env.b.url}/ok", root, priority=2, hash_algorithms=["sha256"], name="Test TSA B"),
        "tsa-off": _tsa(f"{env.b.url}/ok", root, enabled=False, name="Switched off"),
        "tsa-tls": _tsa(f"{env.tls.url}/ok", root, auto_select=False, ca_file=str(tls["ca"]),
                        client_cert=str(tls["client_cert"]), client_key=str(tls["client_key"])),
        "tsa-tls-nocert": _tsa(f"{env.tls.url}/ok", root, auto_select=False, ca_file=str(tls["ca"]),
                               timeout_seconds=3),
    }
    for mode in BAD_MODES:
        tsas[mode] = _tsa(f"{env.bad.url}/{mode}", root, auto_select=False, priority=50)
    return {"cooldown_seconds": COOLDOWN, "probe_on_start": True, "tsa": tsas}


@pytest.fixture(scope="module")
def tsa_env(tmp_path_factory):
    base = tmp_path_factory.mktemp("tsa-env")
    thread = ServerThread()
    port = free_port()
    pki = TestPki(base / "keys", f"http://127.0.0.1:{port}")
    servers: list[HttpServer] = [animator(thread, pki, port)]
    try:
        tls = tls_material(base / "tls")
        a = TsaServer(thread, pki, "tsa-ec", basic_auth=("rssp", A_PASSWORD))
        b = TsaServer(thread, pki, "tsa-rsa")
        bad = TsaServer(thread, pki)
        tls_server = TsaServer(thread, pki, ssl_context=mtls_server_context(tls))
        servers += [a, b, bad, tls_server]
        env_vars = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
        dep = Deployment(base / "instance", None, env_vars)
        dep.rssp("init", str(dep.directory), "--production")
        dep.add_user("alice", "alice-password")
        config_path = dep.directory / "rssp.toml"
        production = tomllib.loads(config_path.read_text())
        env = Env(dep, pki, pki.cert("root"), a, b, bad, tls_server, servers[0], production)
        root = pki.write_root(base / "test-root.pem")
        (dep.directory / "tsa-a-password").write_text(A_PASSWORD + "\n")
        config_path.write_text(tomli_w.dumps({**production, "timestamps": _pool_config(env, root, tls)}))
        dep.seal_config()
        dep.start(workers=1)
        try:
            yield env
        finally:
            dep.stop()
    finally:
        for server in servers:
            server.close()
        thread.close()


@pytest.fixture
async def tsa(http, tsa_env) -> Tsa:
    csc = CSC(http, tsa_env.dep)
    return Tsa(csc, tsa_env, await csc.token("alice"))


class Tsa:
    """Calls on the TSA deployment with alice's service token."""

    def __init__(self, csc: CSC, env: Env, token: str) -> None:
        self.csc, self.env, self.token = csc, env, token

    async def call(self, method: str, body: dict[str, Any]) -> tuple[int, Any]:
        status, data = await self.csc.call(method, body, self.token)
        text = json.dumps(data, ensure_ascii=False)
        for secret in self.env.secrets_and_urls():
            assert secret not in text, f"{secret!r} leaked in {method}: {text[:300]}"
        return status, data

    async def stamp(self, digest: bytes, hash_oid: str = SHA256, **extra: Any) -> tuple[int, Any]:
        return await self.call("signatures/timestamp", {"hash": b64(digest), "hashAlgo": hash_oid, **extra})

    async def info(self, tsa_id: str, **extra: Any) -> dict[str, Any]:
        status, body = await self.call("timestamps/info", {"timestampID": tsa_id, **extra})
        assert status == 200, body
        return body

    async def wait_status(self, tsa_id: str, status: str, timeout: float = 15.0) -> None:
        deadline = time.monotonic() + timeout
        while (current := (await self.info(tsa_id))["status"]) != status:
            assert time.monotonic() < deadline, f"{tsa_id} still {current}, expected {status}"
            await asyncio.sleep(0.2)


def digest_of(data: bytes, name: str = "sha256") -> bytes:
    return hashlib.new(name, data).digest()


async def check_token(token_b64: str, digest: bytes, hash_name: str, root: x509.Certificate,
                      nonce: int | None = None) -> tsp.TSTInfo:
    """pyHanko validates the token against the root; the imprint (and nonce) are the requested ones."""
    content = cms.ContentInfo.load(base64.b64decode(token_b64))
    signed_data = content["content"]
    context = ValidationContext(trust_roots=[root], allow_fetching=False, revocation_mode="soft-fail")
    status = await validate_tst_signed_data(signed_data, context, lambda _algo: digest)
    assert status["intact"] and status["valid"], status
    assert status["trust_problem_indic"] is None, status["trust_problem_indic"]
    tst = signed_data["encap_content_info"]["content"].parsed
    assert tst["message_imprint"]["hashed_message"].native == digest
    assert tst["message_imprint"]["hash_algorithm"]["algorithm"].native == hash_name
    if nonce is not None:
        assert tst["nonce"].native == nonce
    return tst


# ---------------------------------------------------------------------- tokens

async def test_methods_are_listed(tsa):
    status, info = await tsa.csc.call("info", {})
    assert status == 200
    assert {"signatures/timestamp", "timestamps/list", "timestamps/info"} <= set(info["methods"])


@pytest.mark.parametrize("tsa_id, hash_name, hash_oid", [
    ("tsa-a", "sha256", SHA256), ("tsa-a", "sha512", SHA512), ("tsa-b", "sha256", SHA256),
    ("tsa-tls", "sha384", SHA384),
])
async def test_token_from_each_tsa_verifies(tsa, tsa_id, hash_name, hash_oid):
    digest = digest_of(secrets.token_bytes(16), hash_name)
    nonce = secrets.randbits(64)
    status, body = await tsa.stamp(digest, hash_oid, nonce=format(nonce, "x"), timestampID=tsa_id)
    assert status == 200, body
    assert body["timestampID"] == tsa_id
    tst = await check_token(body["timestamp"], digest, hash_name, tsa.env.root, nonce)
    assert tst["policy"].dotted == POLICY


async def test_without_timestamp_id_the_default_answers(tsa):
    digest = digest_of(b"default")
    status, body = await tsa.stamp(digest)
    assert status == 200 and body["timestampID"] == "tsa-a", body
    await check_token(body["timestamp"], digest, "sha256", tsa.env.root)


async def test_v1_path_and_v2_hash_name_are_accepted(tsa):
    digest = digest_of(b"v1")
    v1 = CSC(tsa.csc.session, tsa.env.dep, version="v1")
    status, body = await v1.call("signatures/timestamp", {"hash": b64(digest), "hashAlgo": SHA256}, tsa.token)
    assert status == 200, body
    status, body = await tsa.call("signatures/timestamp", {"hash": b64(digest), "hashAlgorithmOID": SHA256})
    assert status == 200, body


# ---------------------------------------------------------------------- list and info

async def test_list_and_info(tsa):
    status, body = await tsa.call("timestamps/list", {})
    assert status == 200 and "timestampInfos" not in body
    ids = body["timestampIDs"]
    assert ids[:2] == ["tsa-a", "tsa-b"] and "tsa-off" in ids and "rogue" in ids
    status, body = await tsa.call("timestamps/list", {"timestampInfo": True, "onlyValid": True,
                                                      "certificates": "none", "lang": "ja-JP"})
    assert status == 200
    infos = {i["timestampID"]: i for i in body["timestampInfos"]}
    assert body["timestampIDs"] == list(infos) and "tsa-off" not in infos
    assert all(i["status"] == "available" for i in infos.values())
    a = infos["tsa-a"]
    assert a["name"] == "テスト時刻認証局A" and a["description"] == "ECDSAのテストTSA"
    assert a["default"] is True and infos["tsa-b"]["default"] is False
    assert a["policyOID"] == POLICY and a["accuracy"] == 1
    assert a["hashAlgos"] == [SHA256, SHA384, SHA512] and infos["tsa-b"]["hashAlgos"] == [SHA256]
    assert a["accreditation"] == {"scheme": "JP-TSA (test)", "accredited": True,
                                  "authority": "Test Accreditation Body", "since": "2024-04-01"}
    assert "certificates" not in a["cert"] and a["cert"]["subjectDN"].startswith("CN=rssp Test TSA ECDSA")
    assert a["cert"]["issuerDN"].startswith("CN=rssp Test Intermediate CA")
    assert {"serialNumber", "validFrom", "validTo"} <= set(a["cert"])


async def test_info_certificates_and_statuses(tsa):
    env = tsa.env
    single = await tsa.info("tsa-a", lang="en")
    assert single["name"] == "Test TSA A"
    assert [base64.b64decode(c) for c in single["cert"]["certificates"]] == [env.pki.cert("tsa-ec").dump()]
    chain = await tsa.info("tsa-b", certificates="chain")
    assert [base64.b64decode(c) for c in chain["cert"]["certificates"]] == [
        env.pki.cert("tsa-rsa").dump(), env.pki.cert("interm").dump(), env.root.dump()]
    off = await tsa.info("tsa-off")
    assert off["status"] == "disabled" and off["default"] is False
    status, body = await tsa.call("timestamps/info", {"timestampID": "nope"})
    assert (status, body["error_description"]) == (400, "Invalid parameter timestampID")
    status, body = await tsa.call("timestamps/info", {})
    assert (status, body["error_description"]) == (400, "Missing (or invalid type) string parameter timestampID")
    status, body = await tsa.call("timestamps/info", {"timestampID": "tsa-a", "certificates": "all"})
    assert (status, body["error_description"]) == (400, "Invalid parameter certificates")


async def test_timestamp_methods_need_a_token(tsa):
    status, body = await tsa.csc.call("timestamps/list", {})
    assert status == 401, body


# ---------------------------------------------------------------------- errors

@pytest.mark.parametrize("body, status, error, description", [
    ({"timestampID": "nope"}, 400, "invalid_request", "Invalid parameter timestampID"),
    ({"timestampID": "tsa-off"}, 400, "invalid_request", "Invalid parameter timestampID"),
    ({"timestampID": "tsa-b", "hashAlgo": SHA512, "hash": b64(bytes(64))}, 400, "invalid_request",
     "Invalid parameter hashAlgo"),
    ({"hashAlgo": SHA3_256}, 400, "invalid_request", "Invalid parameter hashAlgo"),
    ({"hashAlgo": SHA1}, 400, "invalid_request", "Invalid parameter hashAlgo"),
    ({"hashAlgo": "1.2.3"}, 400, "invalid_request", "Invalid parameter hashAlgo"),
    ({"hashAlgo": SHA384}, 400, "invalid_request", "Invalid digest value length"),
    ({"hashAlgo": None}, 400, "invalid_request", "Missing (or invalid type) string parameter hashAlgo"),
    ({"hash": None}, 400, "invalid_request", "Missing (or invalid type) string parameter hash"),
    ({"hash": ""}, 400, "invalid_request", "Empty hash parameter"),
    ({"hash": "!!!notbase64"}, 400, "invalid_request", "Invalid Base64 hash string parameter"),
    ({"hash": ["x"]}, 400, "invalid_request", "Missing (or invalid type) string parameter hash"),
    ({"nonce": "xyz"}, 400, "invalid_request", "Invalid parameter nonce"),
    ({"nonce": ""}, 400, "invalid_request", "Invalid parameter nonce"),
    ({"nonce": "0x1f"}, 400, "invalid_request", "Invalid parameter nonce"),
    ({"nonce": "-1f"}, 400, "invalid_request", "Invalid parameter nonce"),
    ({"nonce": "1" * 65}, 400, "invalid_request", "Invalid parameter nonce"),
    ({"nonce": 12}, 400, "invalid_request", "Missing (or invalid type) string parameter nonce"),
    ({"timestampID": 1}, 400, "invalid_request", "Missing (or invalid type) string parameter timestampID"),
])
async def test_bad_requests(tsa, body, status, error, description):
    request = {"hash": b64(digest_of(b"x")), "hashAlgo": SHA256, **body}
    request = {k: v for k, v in request.items() if v is not None}
    got_status, got = await tsa.call("signatures/timestamp", request)
    assert (got_status, got) == (status, {"error": error, "error_description": description})


# ---------------------------------------------------------------------- misbehaving TSAs

REFUSALS = {
    "bad-imprint": "message imprint is not the requested hash",
    "bad-nonce": "nonce missing or different",
    "rogue": "TSU certificate not trusted",
    "rejection": "TSA answered status rejection",
    "noncrit-eku": "extended key usage missing or not critical",
    "wrong-policy": "policy 1.2.3.4.5.6 is not the configured",
    "stale": "is too far from now",
    "bad-signature": "signature",
    "ess-mismatch": "ESSCertID does not match the signer certificate",
    "garbage": "malformed TimeStampResp",
}


@pytest.mark.parametrize("mode", BAD_MODES)
async def test_misbehaving_tsa_is_not_relayed(tsa, mode):
    """Asked for explicitly, a misbehaving TSA gives 503; the server log names the failed check.

    The TSA was contacted (its hit counter; the start-up probe or this request) and every
    answer it gave was refused by the verifier for the reason of its misbehaviour.
    """
    status, body = await tsa.stamp(digest_of(mode.encode()), timestampID=mode, nonce="c0ffee")
    assert status == 503, body
    assert body == {"error": "temporarily_unavailable", "error_description": "No time-stamping authority is available"}
    assert tsa.env.bad.hits[mode] >= 1
    assert (await tsa.info(mode))["status"] == "unavailable"
    pattern = rf"TSA {re.escape(mode)} failed \(TokenRejected: [^\n]*{re.escape(REFUSALS[mode])}"
    assert re.search(pattern, tsa.env.dep.server_log()), pattern


async def test_mtls_tsa_needs_the_client_certificate(tsa):
    status, body = await tsa.stamp(digest_of(b"no client cert"), timestampID="tsa-tls-nocert")
    assert status == 503, body
    status, body = await tsa.stamp(digest_of(b"client cert"), timestampID="tsa-tls")
    assert status == 200, body


async def test_basic_auth_is_sent_to_its_tsa_only(tsa):
    """tsa-a refuses requests without its password: it answering at all shows rssp sent it."""
    hits = tsa.env.a.hits["ok"]
    status, body = await tsa.stamp(digest_of(b"basic"), timestampID="tsa-a")
    assert status == 200 and tsa.env.a.hits["ok"] == hits + 1, body


# ---------------------------------------------------------------------- failover and health

async def test_failover_cooldown_and_recovery(tsa):
    env = tsa.env
    env.a.stop()
    try:
        status, body = await tsa.stamp(digest_of(b"failover 1"))
        assert status == 200 and body["timestampID"] == "tsa-b", body
        assert (await tsa.info("tsa-a"))["status"] == "unavailable"
        status, body = await tsa.call("timestamps/list", {"onlyValid": True})
        assert "tsa-a" not in body["timestampIDs"] and "tsa-b" in body["timestampIDs"]
        status, body = await tsa.stamp(digest_of(b"asked for the stopped one"), timestampID="tsa-a")
        assert status == 503, body
        status, body = await tsa.stamp(digest_of(b"failover 2"))
        assert status == 200 and body["timestampID"] == "tsa-b", body
    finally:
        env.a.start()
    started = time.monotonic()
    await tsa.wait_status("tsa-a", "available")
    assert time.monotonic() - started < COOLDOWN + 5
    status, body = await tsa.stamp(digest_of(b"back"))
    assert status == 200 and body["timestampID"] == "tsa-a", body


async def test_all_tsas_down_is_503(tsa):
    env = tsa.env
    env.a.stop()
    env.b.stop()
    try:
        for _ in range(2):  # first: both fail now; second: both cooling down
            status, body = await tsa.stamp(digest_of(b"nobody home"))
            assert (status, body["error"]) == (503, "temporarily_unavailable"), body
    finally:
        env.a.start()
        env.b.start()
    await tsa.wait_status("tsa-a", "available")
    await tsa.wait_status("tsa-b", "available")
    status, body = await tsa.stamp(digest_of(b"all back"))
    assert status == 200 and body["timestampID"] == "tsa-a", body


# ---------------------------------------------------------------------- instances

def test_production_init_leaves_the_test_pki_out(tsa_env):
    assert "devpki" not in tsa_env.production_toml and "timestamps" not in tsa_env.production_toml
    assert not (tsa_env.dep.directory / "devpki").exists()


def test_no_tsa_configured_mounts_no_timestamp_method(tmp_path):
    from types import SimpleNamespace

    from aiohttp import web

    from extensions.timestamps import setup
    from rssp.api.registry import Registry

    registry = Registry()
    services = SimpleNamespace(config=SimpleNamespace(section=lambda _name: {}, directory=tmp_path), extras={})
    setup(web.Application(), registry, services)  # type: ignore[arg-type]
    assert registry.names() == [] and services.extras == {}


async def test_development_instance_has_working_tsas(csc, dep):
    token = await csc.token("alice")
    status, body = await csc.call("timestamps/list", {"timestampInfo": True}, token)
    assert status == 200, body
    assert body["timestampIDs"] == ["dev-ec", "dev-rsa"]
    root = x509.Certificate.load(pem.unarmor((dep.directory / "devpki" / "root.pem").read_bytes())[2])
    for info in body["timestampInfos"]:
        assert info["status"] == "available" and info["accreditation"]["accredited"] is False
        digest = digest_of(info["timestampID"].encode(), "sha384")
        nonce = secrets.randbits(64)
        status, stamp = await csc.call("signatures/timestamp", {"hash": b64(digest), "hashAlgo": SHA384,
                                                                "timestampID": info["timestampID"],
                                                                "nonce": format(nonce, "x")}, token)
        assert status == 200, stamp
        await check_token(stamp["timestamp"], digest, "sha384", root, nonce)
    config = tomllib.loads((dep.directory / "rssp.toml").read_text())
    assert config["devpki"]["ocsp"] and config["devpki"]["crl"]


def test_development_pki_runs_once_for_all_workers(dep):
    """``rssp serve --workers 2``: one test PKI process, a child of the server, on loopback."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if b"rssp.devpki" in cmdline and str(dep.directory).encode() in cmdline:
            pids.append(int(entry.name))
    assert len(pids) == 1, pids
    assert os.getpgid(pids[0]) == os.getpgid(dep.proc.pid)


def test_development_pki_stops_with_its_owner(tmp_path):
    from rssp.devpki import create

    section = create(tmp_path)["devpki"]
    (tmp_path / "rssp.toml").write_text(tomli_w.dumps({"devpki": section}))
    pki = DevPki(tmp_path, section)
    pki.start()
    proc = pki.proc
    assert proc is not None and proc.poll() is None
    pki.stop()
    assert proc.poll() is not None


async def test_info_shows_the_certificate_before_any_time_stamp(http, tmp_path):
    """A TSA's certificate is known only from a token it sent: with no probe at start-up and no
    time-stamp taken yet, ``timestamps/info`` and ``timestamps/list`` ask the TSA once and show it."""
    from deployment import make_deployment_minimal

    dep = make_deployment_minimal(tmp_path / "instance", None)
    config_path = dep.directory / "rssp.toml"
    raw = tomllib.loads(config_path.read_text())
    raw["timestamps"]["probe_on_start"] = False
    config_path.write_text(tomli_w.dumps(raw))
    dep.seal_config()
    await asyncio.to_thread(dep.start, 1)
    try:
        csc = CSC(http, dep)
        token = await csc.token("signer")
        root = pem.unarmor((dep.directory / "devpki" / "root.pem").read_bytes())[2]
        status, info = await csc.call("timestamps/info", {"timestampID": "dev-ec", "certificates": "chain"}, token)
        assert status == 200, info
        assert base64.b64decode(info["cert"]["certificates"][-1]) == root
        status, listed = await csc.call("timestamps/list", {"timestampInfo": True}, token)
        assert status == 200, listed
        assert all(i["cert"]["certificates"] for i in listed["timestampInfos"])
    finally:
        dep.stop()
