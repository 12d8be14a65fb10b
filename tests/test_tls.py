"""``rssp serve`` over HTTPS: TLS 1.2 and 1.3 accepted, older protocols refused."""

from __future__ import annotations

import datetime
import ssl
import urllib.request
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from deployment import Deployment


def _self_signed(directory: Path) -> Path:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "localhost")])
    now = datetime.datetime.now(datetime.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(now).not_valid_after(now + datetime.timedelta(days=1))
        .add_extension(x509.SubjectAlternativeName([x509.DNSName("localhost")]), critical=False)
        .sign(key, hashes.SHA256())
    )
    (directory / "tls.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))
    (directory / "tls.pem").write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return directory / "tls.pem"


@pytest.fixture(scope="module")
def tls_server(tmp_path_factory):
    import os

    directory = tmp_path_factory.mktemp("tls") / "inst"
    dep = Deployment(directory, None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
    dep.rssp("init", str(directory))
    cert = _self_signed(directory)
    config = directory / "rssp.toml"
    config.write_text(config.read_text().replace("[server]\n", '[server]\ntls_certificate = "tls.pem"\ntls_key = "tls.key"\n', 1))
    dep.start(workers=1, scheme="https", cafile=str(cert))
    yield dep, cert
    dep.stop()


def _info(dep: Deployment, context: ssl.SSLContext) -> int:
    req = urllib.request.Request(f"https://localhost:{dep.port}/csc/v2/info", data=b"{}", method="POST",
                                 headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, context=context, timeout=10) as resp:
        return resp.status


def test_https_with_tls12_and_tls13(tls_server):
    dep, cert = tls_server
    for version in (ssl.TLSVersion.TLSv1_2, ssl.TLSVersion.TLSv1_3):
        context = ssl.create_default_context(cafile=str(cert))
        context.minimum_version = context.maximum_version = version
        assert _info(dep, context) == 200


def test_tls11_is_refused(tls_server):
    dep, cert = tls_server
    context = ssl.create_default_context(cafile=str(cert))
    context.minimum_version = ssl.TLSVersion.MINIMUM_SUPPORTED
    context.maximum_version = ssl.TLSVersion.TLSv1_1
    context.set_ciphers("DEFAULT:@SECLEVEL=0")  # the client would speak TLS 1.1: the server must not
    with pytest.raises((ssl.SSLError, urllib.error.URLError)):
        _info(dep, context)
