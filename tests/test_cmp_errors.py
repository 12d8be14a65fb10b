"""The CMP connector's refusals of a CA's answer (``ca_connectors/cmp``), against a real CMP peer.

OpenSSL's ``openssl cmp`` mock (tests/cmp_mock.py) answers, inside a loopback-only netns; where
the mock cannot be made to answer wrongly by its own options, a small HTTP relay in the same
namespace passes its real answers on with one thing changed (the transaction ID, the nonce, the
protection, trailing bytes) or answers itself what no CMP server should (garbage, an HTTP error,
too much, nothing). Each case must end the enrollment with the exact :class:`rssp.ca.CAError`
text, which ``rssp credential create`` shows the operator, and never with a certificate.
"""

from __future__ import annotations

import json
import shlex
import sys
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from cmp_mock import CLIENT, MOCK_PORT, MockCmp

MOCK_BEHIND = MOCK_PORT + 1  # the mock, when the relay takes its port

# ``python -c RELAY MODE``: listens on MOCK_PORT, relays to the mock on MOCK_BEHIND, changes its answer.
RELAY = f"""
import asyncio, sys
import aiohttp
from aiohttp import web
from pyasn1.codec.der import decoder
from pyasn1_alt_modules import rfc9480

MODE = sys.argv[1]
seen = 0

def header(data):
    return decoder.decode(data, asn1Spec=rfc9480.PKIMessage())[0]["header"]

def flip(data, value):
    assert data.count(value) == 1, "value not unique"
    return data.replace(value, bytes(b ^ 0xFF for b in value))

http = None

async def forward(body):
    global http
    if http is None:  # one connection to the mock, kept alive: the mock ends a transaction whose client hangs up
        http = aiohttp.ClientSession()
    for _ in range(100):
        try:
            async with http.post("http://127.0.0.1:{MOCK_BEHIND}/pkix/", data=body,
                                 headers={{"Content-Type": "application/pkixcmp"}}) as resp:
                return await resp.read()
        except aiohttp.ClientConnectorError:
            await asyncio.sleep(0.05)
    raise RuntimeError("the mock did not start")

async def relay(request):
    global seen
    seen += 1
    body = await request.read()
    if MODE == "silent":
        await asyncio.sleep(3600)
    if MODE == "garbage":
        return web.Response(body=b"this is no PKIMessage", content_type="application/pkixcmp")
    if MODE == "http500":
        return web.Response(status=500)
    if MODE == "split":  # a good answer in two pieces, the second a little later
        reply = web.StreamResponse(headers={{"Content-Type": "application/pkixcmp"}})
        await reply.prepare(request)
        data = await forward(body)
        await reply.write(data[:len(data) // 2])
        await asyncio.sleep(0.3)
        await reply.write(data[len(data) // 2:])
        await reply.write_eof()
        return reply
    if MODE == "large":
        return web.Response(body=b"0" * (1024 * 1024 + 1), content_type="application/pkixcmp")
    data = await forward(body)
    mode, _, which = MODE.partition("@")
    if which and int(which) != seen:
        return web.Response(body=data, content_type="application/pkixcmp")
    request_header = header(body)
    if mode == "txid":
        data = flip(data, bytes(request_header["transactionID"]))
    elif mode == "nonce":
        data = flip(data, bytes(request_header["senderNonce"]))
    elif mode == "protection":
        data = flip(data, decoder.decode(data, asn1Spec=rfc9480.PKIMessage())[0]["protection"].asOctets())
    elif mode == "trailing":
        data += b"\\x00"
    return web.Response(body=data, content_type="application/pkixcmp")

app = web.Application()
app.router.add_post("/pkix/", relay)
web.run_app(app, host="127.0.0.1", port={MOCK_PORT}, print=None)
"""


@pytest.fixture
def mock(tmp_path: Path) -> MockCmp:
    return MockCmp(tmp_path / "mock")


def _csr(mock: MockCmp) -> tuple[bytes, Path]:
    key = ec.generate_private_key(ec.SECP256R1())
    csr = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name.from_rfc4514_string("CN=Taro Yamada,C=JP")).sign(key, hashes.SHA256())
    path = mock.directory / "req.der"
    path.write_bytes(csr.public_bytes(serialization.Encoding.DER))
    return key.public_key().public_bytes(serialization.Encoding.DER,
                                         serialization.PublicFormat.SubjectPublicKeyInfo), path


def _behind_relay(mock: MockCmp, server: list[str], mode: str) -> list[str]:
    """The mock on MOCK_BEHIND and the relay on MOCK_PORT (where the connector and WAIT_PORT look)."""
    moved = list(server)
    moved[moved.index("-port") + 1] = str(MOCK_BEHIND)
    log = shlex.quote(str(mock.directory / "mock.log"))
    relay = f"{shlex.quote(sys.executable)} -c {shlex.quote(RELAY)} {shlex.quote(mode)}"
    # MockCmp.run stops this shell with SIGTERM: it stops the mock and the relay in turn
    return ["sh", "-c", f"{shlex.join(moved)} >>{log} 2>&1 & O=$!; {relay} & R=$!; trap 'kill $O $R' TERM; wait $R"]


RELAYED = [
    ("txid", "CMP response belongs to another transaction"),
    ("nonce", "CMP response does not answer our request (recipNonce)"),
    ("protection", "CMP response protection (MAC) does not verify"),
    ("trailing", "CMP response has trailing data"),
    ("garbage", "CMP response is not a valid PKIMessage"),
    ("http500", "the CMP server answered HTTP 500"),
    ("large", "CMP response too large"),
    ("txid@2", "CMP response belongs to another transaction"),  # the pkiConf, after the certificate came
    ("nonce@2", "CMP response does not answer our request (recipNonce)"),
    ("protection@2", "CMP response protection (MAC) does not verify"),
]


def test_an_answer_that_arrives_in_pieces_is_read_whole(mock: MockCmp) -> None:
    spki, csr = _csr(mock)
    server = _behind_relay(mock, mock.server_command(mock.rsp_cert_for(spki)), "split")
    out = mock.enroll(mock.connector_config(), csr, server)
    assert "certificate" in out, out


@pytest.mark.parametrize("mode, expected", RELAYED)
def test_a_changed_or_broken_answer_is_refused(mock: MockCmp, mode: str, expected: str) -> None:
    spki, csr = _csr(mock)
    server = _behind_relay(mock, mock.server_command(mock.rsp_cert_for(spki)), mode)
    assert mock.enroll(mock.connector_config(), csr, server) == {"error": expected}


def test_a_ca_that_does_not_answer_in_time(mock: MockCmp) -> None:
    spki, csr = _csr(mock)
    server = _behind_relay(mock, mock.server_command(mock.rsp_cert_for(spki)), "silent")
    out = mock.enroll({**mock.connector_config(), "timeout_seconds": 1}, csr, server)
    assert out == {"error": "cannot reach the CMP server: TimeoutError"}, out


def test_no_ca_listening(mock: MockCmp) -> None:
    _spki, csr = _csr(mock)
    done = mock.run([sys.executable, "-c", CLIENT, json.dumps(mock.connector_config()), str(csr)], server=None)
    assert done.returncode == 0, done.stderr[-3000:]
    out = json.loads(done.stdout.strip().splitlines()[-1])
    assert out == {"error": "cannot reach the CMP server: ClientConnectorError"}, out


@pytest.mark.parametrize("extra, expected", [
    (("-send_unprotected",), "CMP response is not protected"),
    (("-send_error", "-send_unprot_err", "-statusstring", "no such profile"),
     "the CA answered the request with an error: rejection"),
    (("-poll_count", "2", "-check_after", "30"),
     "the CA has not issued the certificate yet (waiting; retry after 30 s)"),
])
def test_the_mock_answering_wrongly_by_its_own_options(mock: MockCmp, extra: tuple[str, ...], expected: str) -> None:
    spki, csr = _csr(mock)
    out = mock.enroll({**mock.connector_config(), "poll_seconds": 10}, csr,
                      mock.server_command(mock.rsp_cert_for(spki), extra))
    assert out.get("error", "").startswith(expected), out


def test_a_signed_answer_from_another_key_is_refused(mock: MockCmp) -> None:
    """Signature protection checked against the configured server certificate (here: the root's, not the mock's)."""
    spki, csr = _csr(mock)
    config = mock.signed_client_config(server_cert="root.pem")
    out = mock.enroll(config, csr, mock.server_command(mock.rsp_cert_for(spki), mac=False))
    assert out == {"error": "CMP response signature does not verify"}, out
