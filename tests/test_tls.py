"""``rssp serve`` over HTTPS: TLS 1.2 and 1.3 only, and in TLS 1.2 only ECDHE with an AEAD cipher.

Each case runs against a two-worker server with an ECDSA and with an RSA certificate. A client
that offers one suite only (Python's ssl, the same OpenSSL as ``openssl s_client``) either
completes a CSC ``info`` call over it or fails the handshake: static RSA key exchange (no
forward secrecy), CBC suites and DHE are refused, TLS 1.0 and 1.1 too.
"""

from __future__ import annotations

import datetime
import http.client
import json
import os
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID

from deployment import Deployment

ACCEPTED = {
    "ec": ["ECDHE-ECDSA-AES128-GCM-SHA256", "ECDHE-ECDSA-AES256-GCM-SHA384", "ECDHE-ECDSA-CHACHA20-POLY1305"],
    "rsa": ["ECDHE-RSA-AES128-GCM-SHA256", "ECDHE-RSA-AES256-GCM-SHA384", "ECDHE-RSA-CHACHA20-POLY1305"],
}
REFUSED = {
    "ec": ["ECDHE-ECDSA-AES128-SHA", "ECDHE-ECDSA-AES256-SHA", "ECDHE-ECDSA-AES128-SHA256",
           "ECDHE-ECDSA-AES256-SHA384"],
    "rsa": ["AES128-GCM-SHA256", "AES256-GCM-SHA384", "AES128-SHA", "AES128-SHA256",  # static RSA
            "ECDHE-RSA-AES128-SHA", "ECDHE-RSA-AES256-SHA", "ECDHE-RSA-AES128-SHA256", "ECDHE-RSA-AES256-SHA384",
            "DHE-RSA-AES128-GCM-SHA256"],
}


def _self_signed(directory: Path, kind: str) -> Path:
    key = ec.generate_private_key(ec.SECP256R1()) if kind == "ec" else rsa.generate_private_key(65537, 2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now)
        .not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (directory / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / "tls.pem"


@pytest.fixture(scope="module", params=["ec", "rsa"])
def tls_server(request, tmp_path_factory):
    directory = tmp_path_factory.mktemp(f"tls-{request.param}") / "inst"
    dep = Deployment(directory, None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
    dep.rssp("init", str(directory))
    cert = _self_signed(directory, request.param)
    config = directory / "rssp.toml"
    tls = '[server]\ntls_certificate = "tls.pem"\ntls_key = "tls.key"\n'
    config.write_text(config.read_text().replace("[server]\n", tls, 1))
    dep.seal_config()
    dep.start(workers=2, scheme="https", cafile=str(cert))
    yield dep, cert, request.param
    dep.stop()


def _client(cert: Path, version: ssl.TLSVersion, suite: str | None = None) -> ssl.SSLContext:
    """A client speaking only ``version`` and, in TLS 1.2 and older, offering only ``suite``."""
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = context.maximum_version = version
    if suite is not None or version < ssl.TLSVersion.TLSv1_2:
        # security level 0: the client must be willing to speak what the server should refuse
        context.set_ciphers(f"{suite or 'DEFAULT'}:@SECLEVEL=0")
    return context


def _info(dep: Deployment, context: ssl.SSLContext) -> tuple[int, dict, tuple[str, str, int]]:
    """A CSC info call over one connection: status, body and the negotiated (suite, version, bits)."""
    conn = http.client.HTTPSConnection("localhost", dep.port, context=context, timeout=10)
    try:
        conn.request("POST", "/csc/v2/info", body=b"{}", headers={"Content-Type": "application/json"})
        resp = conn.getresponse()
        cipher = conn.sock.cipher()
        assert cipher is not None
        return resp.status, json.loads(resp.read()), cipher
    finally:
        conn.close()


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3])
def test_https_with_tls12_and_tls13(tls_server, version):
    dep, cert, _ = tls_server
    status, body, (_, negotiated, _) = _info(dep, _client(cert, version))
    names = {ssl.TLSVersion.TLSv1_2: "TLSv1.2", ssl.TLSVersion.TLSv1_3: "TLSv1.3"}
    assert (status, negotiated) == (200, names[version])
    assert "signatures/signHash" in body["methods"]


@pytest.mark.parametrize("version", [ssl.TLSVersion.TLSv1, ssl.TLSVersion.TLSv1_1])
def test_tls10_and_tls11_are_refused(tls_server, version):
    dep, cert, _ = tls_server
    with pytest.raises(ssl.SSLError):
        _info(dep, _client(cert, version))


def test_forward_secret_aead_suites_are_accepted(tls_server):
    dep, cert, kind = tls_server
    for suite in ACCEPTED[kind]:
        status, body, (negotiated, version, _) = _info(dep, _client(cert, ssl.TLSVersion.TLSv1_2, suite))
        assert (status, negotiated, version) == (200, suite, "TLSv1.2")
        assert body["name"]


def test_static_rsa_cbc_and_dhe_suites_are_refused(tls_server):
    dep, cert, kind = tls_server
    accepted = []
    for suite in REFUSED[kind]:
        try:
            _info(dep, _client(cert, ssl.TLSVersion.TLSv1_2, suite))
            accepted.append(suite)
        except ssl.SSLError:
            pass
    assert accepted == []
