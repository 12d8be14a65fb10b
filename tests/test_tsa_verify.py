"""The token checks of tsa_clients.verify, and the [timestamps] settings, without any server.

Each misbehaviour of :meth:`TestPki.respond` must be refused for its own reason, and a correct
token from each fixture TSA (ECDSA and RSA) must pass.
"""

from __future__ import annotations

import hashlib
import secrets
from pathlib import Path

import pytest
from asn1crypto import tsp
from tsa_helpers import POLICY, TestPki

from rssp.config import ConfigError
from rssp.tsa import TokenRejected
from tsa_clients.rfc3161 import build_request
from tsa_clients.settings import parse_pool
from tsa_clients.verify import Expectation, TokenVerifier

SHA256 = "2.16.840.1.101.3.4.2.1"
SHA512 = "2.16.840.1.101.3.4.2.3"


@pytest.fixture(scope="module")
def pki(tmp_path_factory) -> TestPki:
    # Nothing listens on this prefix: revocation is soft-fail, so fetches fail fast and are ignored.
    return TestPki(tmp_path_factory.mktemp("tsa-verify") / "keys", "http://127.0.0.1:9")


def _ask(pki: TestPki, mode: str, label: str = "tsa-ec", hash_oid: str = SHA256) -> tuple[bytes, Expectation]:
    digest = hashlib.new("sha512" if hash_oid == SHA512 else "sha256", secrets.token_bytes(16)).digest()
    nonce = secrets.randbits(64)
    req = tsp.TimeStampReq.load(build_request(digest, hash_oid, nonce))
    return pki.respond(mode, req, label), Expectation(digest, hash_oid, nonce, POLICY, 300)


def _verifier(pki: TestPki) -> TokenVerifier:
    return TokenVerifier([pki.cert("root")], revocation="soft-fail")


@pytest.mark.parametrize("label", ["tsa-ec", "tsa-rsa"])
@pytest.mark.parametrize("hash_oid", [SHA256, SHA512])
async def test_correct_tokens_pass(pki, label, hash_oid):
    verifier = _verifier(pki)
    try:
        answer, want = _ask(pki, "ok", label, hash_oid)
        token = await verifier.verify(answer, want)
    finally:
        await verifier.close()
    assert token.policy_oid == POLICY
    assert token.chain[-1] == pki.cert("root").dump() and token.chain[0] == pki.cert("interm").dump()
    assert token.signer_cert == pki.cert(label).dump()


@pytest.mark.parametrize("mode, reason", [
    ("bad-imprint", "message imprint is not the requested hash"),
    ("bad-nonce", "nonce missing or different"),
    ("rogue", "TSU certificate not trusted"),
    ("rejection", "TSA answered status rejection"),
    ("noncrit-eku", "extended key usage missing or not critical"),
    ("wrong-policy", "policy 1.2.3.4.5.6 is not the configured"),
    ("stale", "is too far from now"),
    ("bad-signature", "signature"),
    ("ess-mismatch", "ESSCertID does not match the signer certificate"),
    ("garbage", "malformed TimeStampResp"),
])
async def test_misbehaving_answers_are_refused(pki, mode, reason):
    verifier = _verifier(pki)
    try:
        answer, want = _ask(pki, mode)
        with pytest.raises(TokenRejected, match=reason):
            await verifier.verify(answer, want)
    finally:
        await verifier.close()


async def test_another_anchor_is_refused(pki):
    """A correct token is still refused when the TSA is configured with another anchor."""
    verifier = TokenVerifier([pki.cert("rogue-root", pki.rogue)], revocation="soft-fail")
    try:
        answer, want = _ask(pki, "ok")
        with pytest.raises(TokenRejected, match="not trusted"):
            await verifier.verify(answer, want)
    finally:
        await verifier.close()


async def test_wrong_hash_algorithm_is_refused(pki):
    verifier = _verifier(pki)
    try:
        answer, want = _ask(pki, "ok")
        want = Expectation(want.digest, "2.16.840.1.101.3.4.2.8", want.nonce, POLICY, 300)
        with pytest.raises(TokenRejected, match="another hash algorithm"):
            await verifier.verify(answer, want)
    finally:
        await verifier.close()


# ---------------------------------------------------------------------- settings

def _section(tmp: Path, pki: TestPki, **tsas: dict) -> dict:
    root = pki.write_root(tmp / "root.pem")
    base = {"url": "http://127.0.0.1:9/x", "anchors": [str(root)]}
    return {"tsa": {name: {**base, **table} for name, table in tsas.items()}}


def test_settings_defaults_and_names(tmp_path, pki):
    pool = parse_pool(_section(tmp_path, pki, a={"hash_algorithms": ["SHA256", "2.16.840.1.101.3.4.2.3"],
                                                 "password": "s3cret-pw", "username": "u"}), tmp_path)
    (a,) = pool.tsas
    assert a.hash_oids == (SHA256, SHA512) and a.enabled and a.auto_select and a.priority == 100
    assert "s3cret-pw" not in repr(a) and "127.0.0.1" not in repr(a)  # secrets and URLs stay out of logs
    assert pool.cooldown_seconds == 30


@pytest.mark.parametrize("tables, message", [
    ({"a": {"default": True}, "b": {"default": True}}, "more than one default"),
    ({"a": {"anchors": []}}, "at least one trust anchor"),
    ({"a": {"anchors": ["missing.pem"]}}, "cannot read certificates"),
    ({"a": {"url": "ftp://x"}}, "http:// or https://"),
    ({"a": {"hash_algorithms": ["md5"]}}, "unsupported hash algorithm"),
    ({"a": {"revocation": "never"}}, "one of"),
    ({"a": {"policy_oid": "not.an.oid"}}, "dotted OID"),
    ({"a b": {}}, "IDs are"),
    ({"a": {"priority": "high"}}, "expected"),
    ({"a": {"default": True, "enabled": False}}, "default TSA is disabled"),
])
def test_settings_errors_name_the_tsa(tmp_path, pki, tables, message):
    with pytest.raises(ConfigError, match=message):
        parse_pool(_section(tmp_path, pki, **tables), tmp_path)
