"""HTTP edges of ``rssp serve``: clients that leave mid-body, bodies that never finish, slow headers.

A client that closes its connection halfway through a request body costs one log line (no
traceback, no body bytes) and no work: nothing is signed, spent or audited for it. A body that
does not arrive within ``[server] body_timeout_seconds`` gets a CSC-shaped 408 and the
connection closed once ``lingering_seconds`` more of what the client sends has been read;
headers still incomplete after ``keepalive_timeout_seconds`` get the connection closed. Other
clients are served meanwhile.
"""

from __future__ import annotations

import asyncio
import json
import os
import time

import aiohttp
import pytest

from client import ECDSA_SHA256, SHA256, b64, digest
from deployment import Deployment

SAFETY = 60  # seconds: only a bound on a hung test, never the behaviour under test
BODY_TIMEOUT = 4
KEEPALIVE_TIMEOUT = 4
LINGERING = 1.5  # seconds (10 by default): how long after the 408 the server still reads before it closes


@pytest.fixture(scope="module")
def edge_server(tmp_path_factory):
    """A two-worker instance with short body and keep-alive timeouts and a short lingering close."""
    directory = tmp_path_factory.mktemp("edges") / "inst"
    dep = Deployment(directory, None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
    dep.rssp("init", str(directory))
    config = directory / "rssp.toml"
    settings = (f"body_timeout_seconds = {BODY_TIMEOUT}\nkeepalive_timeout_seconds = {KEEPALIVE_TIMEOUT}\n"
                f"lingering_seconds = {LINGERING}\n")
    config.write_text(config.read_text().replace("[server]\n", "[server]\n" + settings, 1))
    dep.seal_config()
    dep.start(workers=2)
    yield dep
    dep.stop()


def _head(dep: Deployment, path: str, length: int, token: str | None = None) -> bytes:
    lines = [f"POST {path} HTTP/1.1", f"Host: 127.0.0.1:{dep.port}", "Content-Type: application/json",
             f"Content-Length: {length}"]
    if token:
        lines.append(f"Authorization: Bearer {token}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode()


async def _wait_for_log(dep: Deployment, offset: int, needle: str, count: int) -> str:
    """The server log written since ``offset`` once ``needle`` appears ``count`` times in it."""
    deadline = time.monotonic() + SAFETY
    while (text := dep.server_log()[offset:]).count(needle) < count:
        assert time.monotonic() < deadline, f"{needle!r} not logged {count} times: {text[-3000:]}"
        await asyncio.sleep(0.1)
    return text


async def _info_calls(dep: Deployment, n: int, order: list[str]) -> None:
    """``n`` info calls, each on a fresh connection (the kernel picks the worker)."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=SAFETY)) as session:
        for _ in range(n):
            async with session.post(f"{dep.base}/csc/v2/info", json={}) as resp:
                assert resp.status == 200, await resp.text()
                order.append("info")


async def test_a_client_leaving_mid_body_costs_a_log_line_and_nothing_else(csc, dep):
    cred = dep.creds["p256"]
    token = await csc.token()
    d = digest(f"left mid-body {time.time()}".encode())
    sad = await csc.sad(token, cred, hashes=[d])
    body = json.dumps({"credentialID": cred.id, "SAD": sad, "hashes": [b64(d)], "hashAlgorithmOID": SHA256,
                       "signAlgo": ECDSA_SHA256}).encode()
    cut = body.index(sad.encode()) + len(sad)  # the SAD is on the wire, the request is not complete
    offset = len(dep.server_log())
    for _ in range(4):
        reader, writer = await asyncio.open_connection("127.0.0.1", dep.port)
        writer.write(_head(dep, "/csc/v2/signatures/signHash", len(body), token) + body[:cut])
        await writer.drain()
        writer.close()
        await writer.wait_closed()
    text = await _wait_for_log(dep, offset, "/csc/v2/signatures/signHash", 4)
    for bad in ("Traceback", "Error handling request", " ERROR ", "unhandled error", sad, token, b64(d)):
        assert bad not in text, text[-3000:]
    status, result = await csc.sign(token, cred, sad, [d], ECDSA_SHA256)
    assert status == 200, result  # the SAD was not spent by the cut requests, and the server still serves
    records = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "1000")
    signed = [r["outcome"] for r in records
              if r["action"] == "signature.sign" and d.hex() in r["detail"].get("hashes", [])]
    assert signed == ["authorized"]


@pytest.mark.parametrize("path", ["/csc/v2/info", "/oauth2/token"])
async def test_a_body_that_stops_arriving_gets_408_and_the_connection_closed(edge_server, path):
    dep = edge_server
    body = b'{"clientData": "' + b"x" * 1000 + b'"}'
    reader, writer = await asyncio.open_connection("127.0.0.1", dep.port)
    try:
        writer.write(_head(dep, path, len(body)) + body[: len(body) // 2])
        await writer.drain()
        order: list[str] = []
        times: list[float] = []

        async def held() -> bytes:
            first = await reader.readline()
            order.append("held answered")
            times.append(time.monotonic())
            rest = await reader.read()  # to EOF: the server closes the connection
            times.append(time.monotonic())
            return first + rest

        answer = asyncio.ensure_future(asyncio.wait_for(held(), SAFETY))
        await _info_calls(dep, 5, order)
        data = await answer
    finally:
        writer.close()
    assert order == ["info"] * 5 + ["held answered"]
    head, _, payload = data.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 408 "), data[:500]
    assert b"connection: close" in head.lower()
    assert json.loads(payload) == {"error": "invalid_request", "error_description": "Request body not received in time"}
    assert LINGERING * 0.8 <= times[1] - times[0] < LINGERING + 5, times  # closed after the lingering, not 10 s
    assert "Traceback" not in dep.server_log()


async def test_headers_that_never_finish_get_the_connection_closed(edge_server):
    """Slowloris: a header line every half second keeps the connection busy but never makes a request."""
    dep = edge_server
    reader, writer = await asyncio.open_connection("127.0.0.1", dep.port)
    try:
        writer.write(f"POST /csc/v2/info HTTP/1.1\r\nHost: 127.0.0.1:{dep.port}\r\n".encode())
        order: list[str] = []

        async def trickle() -> None:
            for i in range(2 * SAFETY):
                await asyncio.sleep(0.5)
                if reader.at_eof():
                    return
                writer.write(f"X-Slow-{i}: y\r\n".encode())

        async def closed() -> bytes:
            data = await reader.read()
            order.append("closed")
            return data

        sender = asyncio.ensure_future(trickle())
        answer = asyncio.ensure_future(asyncio.wait_for(closed(), SAFETY))
        await _info_calls(dep, 5, order)
        data = await answer
        sender.cancel()
    finally:
        writer.close()
    assert data == b""  # closed by the server, with nothing to answer
    assert order == ["info"] * 5 + ["closed"]


@pytest.mark.parametrize(("setting", "said"), [
    ("lingering_seconds=-1", "lingering_seconds must be between 0 and 300"),
    ("lingering_seconds=301", "lingering_seconds must be between 0 and 300"),
    ("lingering_seconds=nan", "lingering_seconds must be between 0 and 300"),
    ('lingering_seconds="ten"', "lingering_seconds must be a number of seconds"),
    ("body_timeout_seconds=true", "body_timeout_seconds must be a number of seconds"),
    ('shutdown_delay_seconds="1"', "shutdown_delay_seconds must be a number of seconds"),
])
def test_a_server_time_setting_out_of_range_is_refused_before_anything_is_made(tmp_path, setting, said):
    directory = tmp_path / "inst"
    dep = Deployment(directory, None, {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"})
    done = dep.rssp("init", str(directory), f"--set=server.{setting}", check=False)
    assert done.returncode == 2 and said in done.stderr and "Traceback" not in done.stderr, done.stderr
    assert not directory.exists()
