"""The pool's selection, failover and cool-down logic, and a third-party TSA client plug-in.

The plug-in here is a real one, registered the way any distribution registers it (an entry
point in group ``rssp.tsa_clients``, from a ``*.dist-info`` directory on ``sys.path``): a
"local TSA" client that asks certomancer's TimeStamper in-process instead of going over HTTP,
and verifies the answer with the same verifier as the built-in client. The pool runs on a
fake clock, so cool-downs are exact and the test takes no time.
"""

from __future__ import annotations

import hashlib
import sys
import textwrap
from pathlib import Path

import pytest
from tsa_helpers import POLICY, TestPki

from rssp.tsa import TimestampRequest, TsaUnavailable, UnknownTsa, UnsupportedHash
from tsa_clients.pool import TsaPool

SHA256 = "2.16.840.1.101.3.4.2.1"
SHA512 = "2.16.840.1.101.3.4.2.3"

PLUGIN = '''
"""A TSA client plug-in: certomancer's TimeStamper in-process (a "local TSA")."""
from asn1crypto import tsp

from rssp.tsa import TokenRejected
from tsa_clients.rfc3161 import build_request
from tsa_clients.verify import Expectation, TokenVerifier

PKI = None  # set by the test
CLIENTS = {}


class LocalTsa:
    def __init__(self, settings, table, directory):
        self.settings, self.label = settings, table["label"]
        self.verifier = TokenVerifier(settings.anchors, revocation="soft-fail")
        self.broken, self.calls = False, 0
        CLIENTS[settings.timestamp_id] = self

    async def start(self):
        pass

    async def request(self, digest, hash_oid, nonce):
        self.calls += 1
        if self.broken:
            raise ConnectionError("local TSA switched off")
        req = tsp.TimeStampReq.load(build_request(digest, hash_oid, nonce))
        answer = PKI.respond("ok", req, self.label)
        want = Expectation(digest, hash_oid, nonce, self.settings.policy_oid, 300)
        return await self.verifier.verify(answer, want)

    async def close(self):
        await self.verifier.close()
'''


@pytest.fixture(scope="module")
def plugin(tmp_path_factory):
    """Install the plug-in module and its entry point on sys.path, as a distribution would."""
    base = tmp_path_factory.mktemp("plugin")
    (base / "rssp_local_tsa.py").write_text(PLUGIN)
    dist = base / "rssp_local_tsa-1.0.dist-info"
    dist.mkdir()
    (dist / "METADATA").write_text("Metadata-Version: 2.1\nName: rssp-local-tsa\nVersion: 1.0\n")
    (dist / "entry_points.txt").write_text(textwrap.dedent("""\
        [rssp.tsa_clients]
        local = rssp_local_tsa:LocalTsa
        """))
    sys.path.insert(0, str(base))
    import rssp_local_tsa  # type: ignore[import-not-found]  # written just above, at run time

    rssp_local_tsa.PKI = TestPki(base / "keys", "http://127.0.0.1:9")
    yield rssp_local_tsa
    sys.path.remove(str(base))


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def _pool(plugin, tmp: Path, clock: Clock) -> TsaPool:
    root = plugin.PKI.write_root(tmp / "root.pem")
    common = {"client": "local", "anchors": [str(root)], "policy_oid": POLICY, "url": "http://unused.invalid/"}
    section = {"cooldown_seconds": 30, "probe_on_start": False, "tsa": {
        "first": {**common, "label": "tsa-ec", "priority": 5},
        "second": {**common, "label": "tsa-rsa", "priority": 1, "default": True, "hash_algorithms": ["sha256"]},
        "third": {**common, "label": "tsa-ec", "priority": 9},
        "manual": {**common, "label": "tsa-ec", "priority": 0, "auto_select": False},
        "off": {**common, "label": "tsa-ec", "enabled": False},
    }}
    pool = TsaPool.from_config(section, tmp)
    pool._clock = clock
    return pool


def _req(tsa_id: str | None = None, hash_oid: str = SHA256) -> TimestampRequest:
    size = 64 if hash_oid == SHA512 else 32
    return TimestampRequest(hashlib.sha512(b"x").digest()[:size], hash_oid, 7, tsa_id)


async def test_plugin_selection_failover_and_cooldown(plugin, tmp_path):
    clock = Clock()
    pool = _pool(plugin, tmp_path, clock)
    await pool.start()
    try:
        clients = plugin.CLIENTS
        # order: default, then priority, then ID; auto_select=false and disabled are not candidates
        assert pool.ids() == ["second", "manual", "first", "third", "off"]
        assert (await pool.timestamp(_req())).timestamp_id == "second"
        assert (await pool.timestamp(_req(hash_oid=SHA512))).timestamp_id == "first"  # second: SHA-256 only
        assert (await pool.timestamp(_req("manual"))).timestamp_id == "manual"
        with pytest.raises(UnknownTsa):
            await pool.timestamp(_req("off"))
        with pytest.raises(UnknownTsa):
            await pool.timestamp(_req("nope"))
        with pytest.raises(UnsupportedHash):
            await pool.timestamp(_req("second", SHA512))

        clients["second"].broken = True
        calls = clients["second"].calls
        assert (await pool.timestamp(_req())).timestamp_id == "first"  # failover
        assert clients["second"].calls == calls + 1
        assert pool.describe("second").status == "unavailable" and "second" not in pool.ids(only_valid=True)
        assert (await pool.timestamp(_req())).timestamp_id == "first"
        assert clients["second"].calls == calls + 1  # skipped while cooling down
        with pytest.raises(TsaUnavailable):
            await pool.timestamp(_req("second"))  # asked for explicitly: no silent substitute

        clients["second"].broken = False
        clock.now += 31  # cool-down over: requests may try it again (the prober would too)
        assert (await pool.timestamp(_req())).timestamp_id == "second"
        assert pool.describe("second").status == "available"

        for name in ("first", "second", "third"):
            clients[name].broken = True
        with pytest.raises(TsaUnavailable):
            await pool.timestamp(_req())
        assert {pool.describe(n).status for n in ("first", "second", "third")} == {"unavailable"}
        assert pool.describe("off").status == "disabled"
        desc = pool.describe("first")
        assert desc.signer_cert == plugin.PKI.cert("tsa-ec").dump() and desc.policy_oid == POLICY
    finally:
        await pool.close()


def test_unknown_client_plugin_fails_at_start_up(plugin, tmp_path):
    root = plugin.PKI.write_root(tmp_path / "root.pem")
    section = {"tsa": {"x": {"client": "no-such-client", "url": "http://x/", "anchors": [str(root)]}}}
    with pytest.raises(LookupError, match="no TSA client named 'no-such-client'"):
        TsaPool.from_config(section, tmp_path)
