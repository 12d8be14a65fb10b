"""The CMP connector against OpenSSL 3's ``openssl cmp`` mock server (see tests/cmp_mock.py).

Client and mock run together in a loopback-only network namespace; the mock is a real CMP
peer: it checks our protection and answers with its own, which the connector verifies.
"""

from __future__ import annotations

import base64
import json
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cmp_mock import CLIENT_FOR_KEY, PRE_HOOK, MockCmp
from deployment import Deployment
from manages_helpers import count_rows, private_key_count



@pytest.fixture
def mock(tmp_path) -> MockCmp:
    return MockCmp(tmp_path / "mock")


def _key_and_csr(directory: Path) -> tuple[bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string("CN=Taro Yamada,C=JP")).sign(key, hashes.SHA256())
    path = directory / "req.der"
    path.write_bytes(csr.public_bytes(serialization.Encoding.DER))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    return spki, path


def _enroll(mock: MockCmp, config: dict, csr: Path, server: list[str]) -> dict:
    return mock.enroll(config, csr, server)


def test_p10cr_with_mac_protection(mock):
    spki, csr = _key_and_csr(mock.directory)
    rsp = mock.rsp_cert_for(spki)
    out = _enroll(mock, mock.connector_config(), csr, mock.server_command(rsp))
    assert "error" not in out, out
    cert = x509.load_der_x509_certificate(base64.b64decode(out["certificate"]))
    assert cert.public_key().public_bytes(serialization.Encoding.DER,
                                          serialization.PublicFormat.SubjectPublicKeyInfo) == spki
    assert out["chain"] and base64.b64decode(out["chain"][0]) == mock.root.der  # caPubs
    assert mock.mock_log().count("POST /pkix/") == 2  # p10cr, then certConf (answered by pkiConf)


def test_p10cr_with_signature_protection(mock):
    spki, csr = _key_and_csr(mock.directory)
    out = _enroll(mock, mock.signed_client_config(), csr, mock.server_command(mock.rsp_cert_for(spki), mac=False))
    assert "certificate" in out, out


def test_implicit_confirmation_skips_cert_conf(mock):
    spki, csr = _key_and_csr(mock.directory)
    config = {**mock.connector_config(), "implicit_confirm": True}
    out = _enroll(mock, config, csr, mock.server_command(mock.rsp_cert_for(spki), ("-grant_implicitconf",)))
    assert "certificate" in out, out
    assert mock.mock_log().count("POST /pkix/") == 1  # no certConf once the CA granted implicitConfirm


def test_waiting_is_polled(mock):
    spki, csr = _key_and_csr(mock.directory)
    out = _enroll(mock, mock.connector_config(), csr,
                  mock.server_command(mock.rsp_cert_for(spki), ("-poll_count", "1", "-check_after", "1")))
    assert "certificate" in out, out


@pytest.mark.parametrize("extra, expected", [
    (("-pkistatus", "2", "-failurebits", "512", "-statusstring", "subscriber not verified"),
     "the CA refused: rejection: subscriber not verified (failInfo: badPOP)"),
    (("-send_error",), "the CA answered p10cr with an error: rejection"),
])
def test_rejections_are_clear_errors(mock, extra, expected):
    spki, csr = _key_and_csr(mock.directory)
    out = _enroll(mock, mock.connector_config(), csr, mock.server_command(mock.rsp_cert_for(spki), extra))
    assert out.get("error", "").startswith(expected), out


def test_wrong_shared_secret_is_refused(mock):
    spki, csr = _key_and_csr(mock.directory)
    (mock.directory / "wrong").write_text("not-the-secret\n")
    config = {**mock.connector_config(), "mac_secret_file": str(mock.directory / "wrong")}
    out = _enroll(mock, config, csr, mock.server_command(mock.rsp_cert_for(spki)))
    assert "error" in out and "certificate" not in out, out


def test_certificate_for_another_key_is_rejected_in_cert_conf(mock):
    spki, csr = _key_and_csr(mock.directory)
    (mock.directory / "other").mkdir()
    other, _ = _key_and_csr(mock.directory / "other")
    out = _enroll(mock, mock.connector_config(), csr, mock.server_command(mock.rsp_cert_for(other)))
    assert out == {"error": "the CA returned a certificate for another public key"}, out


@pytest.mark.parametrize("request_type", ["cr", "ir"])
def test_crmf_request_with_pop_signed_by_the_key(mock, request_type):
    key = ec.generate_private_key(ec.SECP256R1())
    key_path = mock.directory / "subscriber.key"
    key_path.write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                           serialization.NoEncryption()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    config = {**mock.connector_config(), "request_type": request_type}
    done = mock.run([sys.executable, "-c", CLIENT_FOR_KEY, json.dumps(config), str(key_path)],
                    server=mock.server_command(mock.rsp_cert_for(spki)))
    assert done.returncode == 0, done.stderr[-3000:] + mock.mock_log()[-2000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert "certificate" in out, (out, mock.mock_log()[-2000:])


# ============================================================================ rssp credential create --ca

@pytest.fixture(scope="module")
def cmp_instance(tmp_path_factory) -> tuple[Deployment, MockCmp]:
    """A SQLite instance (the namespace reaches files, not a PostgreSQL server) with a CMP CA."""
    import os

    base = tmp_path_factory.mktemp("cmp-cli")
    mock = MockCmp(base / "mock")
    dep = Deployment(base / "instance", None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
    dep.rssp("init", str(dep.directory))
    dep.add_user("alice", "alice-password")
    dep.rssp_json("ca", "add", str(dep.directory), "cmpca", "--connector", "cmp", "--url", mock.url,
                  "--mac-secret-file", str(mock.directory / "secret"), "--reference", "rssp",
                  "--anchor", str(mock.directory / "root.pem"))
    dep.rssp_json("ca", "add", str(dep.directory), "cmpcr", "--connector", "cmp", "--url", mock.url,
                  "--mac-secret-file", str(mock.directory / "secret"), "--reference", "rssp",
                  "--anchor", str(mock.directory / "root.pem"), "--request-type", "cr")
    return dep, mock


def _create_args(dep: Deployment, level: int = 1, ca: str = "cmpca", key: str = "ec-p256") -> list[str]:
    args = ["credential", "create", str(dep.directory), "--user", "alice", "--key", key, "--pin", "123456",
            "--ca", ca, "--subject", "CN=Taro Yamada,C=JP", "--json"]
    return args + (["--level", "2", "--totp"] if level == 2 else [])


@pytest.mark.parametrize("ca, key", [("cmpca", "ec-p256"), ("cmpcr", "rsa-2048")])
def test_cli_credential_create_through_cmp(cmp_instance, ca, key):
    """p10cr (cmpca) and cr with the POP signed by the HSM key (cmpcr), through the real CLI."""
    dep, mock = cmp_instance
    done = mock.run([sys.executable, "-c", PRE_HOOK, str(mock.directory), "[]", *_create_args(dep, ca=ca, key=key)],
                    server=None, env=dep.env)
    assert done.returncode == 0, done.stderr[-3000:] + mock.mock_log()[-2000:]
    cred_id = json.loads(done.stdout)["credentialID"]
    assert count_rows(dep, "credentials", id=cred_id, status="enabled", ca_id=ca) == 1
    listed = json.loads(dep.rssp("audit", "list", str(dep.directory), "--json").stdout)
    assert any(r["action"] == "credential.create" and r["target"] == cred_id for r in listed)


def test_cli_cmp_rejection_leaves_no_credential(cmp_instance):
    dep, mock = cmp_instance
    before, keys_before = count_rows(dep, "credentials"), private_key_count(dep)
    extra = json.dumps(["-pkistatus", "2", "-failurebits", "4", "-statusstring", "identity not proofed"])
    done = mock.run([sys.executable, "-c", PRE_HOOK, str(mock.directory), extra, *_create_args(dep)], server=None,
                    env=dep.env)
    assert done.returncode == 2, done.stdout + done.stderr
    assert "the CA refused: rejection: identity not proofed (failInfo: badRequest)" in done.stderr, done.stderr
    assert count_rows(dep, "credentials") == before
    assert private_key_count(dep) == keys_before  # the key generated for the refused request is destroyed


def test_ca_add_writes_the_ca_and_refuses_bad_input(cmp_instance):
    dep, mock = cmp_instance
    import stat
    import tomllib

    text = (dep.directory / "rssp.toml").read_text()
    assert text.startswith("# rssp instance configuration")  # the comment block survives
    section = tomllib.loads(text)["ca"]["cmpca"]
    assert section["connector"] == "cmp" and section["anchors"] == ["ca/cmpca/anchor-0.pem"]
    secret = dep.directory / section["mac_secret_file"]
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert mock.secret not in text  # the shared secret is in its own file, not in rssp.toml
    base = ["ca", "add", str(dep.directory)]
    for args, message in [
        (["cmpca", "--connector", "local"], "already registered"),
        (["bad id", "--connector", "local"], "a CAID is"),
        (["cmp2", "--connector", "cmp", "--url", mock.url, "--mac-secret-file", str(mock.directory / "secret"),
          "--reference", "r"], "at least one --anchor"),
        (["cmp3", "--connector", "cmp", "--url", "ftp://x", "--anchor", str(mock.directory / "root.pem")],
         "--url http"),
    ]:
        done = dep.rssp(*base, *args, check=False)
        assert done.returncode == 2 and message in done.stderr, (args, done.stderr)
    assert "cmp2" not in tomllib.loads((dep.directory / "rssp.toml").read_text())["ca"]
    assert not (dep.directory / "ca" / "cmp2").exists()
