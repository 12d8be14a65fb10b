"""Starting, stopping and killing processes (#18).

- SIGTERM under load: every request a client got accepted is answered; the server exits 0;
- kill -9 of the supervising process: no worker is left serving;
- kill -9 of ``rssp credential create`` at random points: after the next start no HSM key
  without its credential and no half-made credential;
- two hosts starting at the same moment on an unmigrated PostgreSQL database both come up.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import time

import aiohttp
import asyncpg
from deployment import RSSP, Deployment, _new_deployment, free_port, make_deployment_minimal
from ops_helpers import ECDSA_SHA256, SHA256, b64, digest, join, login, post, sad_for, wait_for, workers_of

from rssp.store.migrations import _MIGRATION_LOCK


async def _loader(dep: Deployment, token: str, stop: asyncio.Event, outcomes: list[str]) -> None:
    """info and signHash calls, each on a new connection, until the port closes."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=60)) as http:
        while not stop.is_set():
            try:
                status, _ = await post(http, dep.base, "info", {})
                outcomes.append(f"answered {status}")
            except aiohttp.ClientConnectorError:  # connection refused: the port is closed, nothing was accepted
                outcomes.append("refused")
                return
            except aiohttp.ClientError as exc:  # accepted, then dropped
                outcomes.append(f"dropped {type(exc).__name__}")
                return


async def _half_sent(dep: Deployment, path: str, body: bytes,
                     token: str) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, bytes]:
    """A request whose headers and first half of the body are on the wire: accepted and in progress."""
    reader, writer = await asyncio.open_connection("127.0.0.1", dep.port)
    head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{dep.port}\r\nContent-Type: application/json\r\n"
            f"Authorization: Bearer {token}\r\nContent-Length: {len(body)}\r\nConnection: close\r\n\r\n").encode()
    writer.write(head + body[: len(body) // 2])
    await writer.drain()
    return reader, writer, body[len(body) // 2:]


async def test_sigterm_under_load_answers_every_accepted_request_and_exits_0(tmp_path, http):
    dep = make_deployment_minimal(tmp_path / "instance", None)
    dep.start(workers=2)
    try:
        token = await login(http, dep.base, "signer", "signer-password")
        cred = dep.creds["signer"].id
        h = digest("in flight at SIGTERM")
        status, out = await sad_for(http, dep.base, token, cred, h)
        assert status == 200, out
        body = json.dumps({"credentialID": cred, "SAD": out["SAD"], "hashes": [b64(h)], "hashAlgorithmOID": SHA256,
                           "signAlgo": ECDSA_SHA256}).encode()
        reader, writer, rest = await _half_sent(dep, "/csc/v2/signatures/signHash", body, token)
        stop, outcomes = asyncio.Event(), []
        loaders = [asyncio.ensure_future(_loader(dep, token, stop, outcomes)) for _ in range(8)]
        await asyncio.sleep(1.0)
        os.killpg(dep.proc.pid, signal.SIGTERM)
        await asyncio.sleep(1.0)  # the port is closed by now; the half-sent request is still being received
        writer.write(rest)
        await writer.drain()
        answer = await asyncio.wait_for(reader.read(), 60)
        writer.close()
        code = await asyncio.to_thread(dep.proc.wait, 90)
        stop.set()
        await asyncio.gather(*loaders)
    finally:
        dep.proc = None
    assert code == 0
    assert [o for o in outcomes if o.startswith("dropped")] == [], outcomes
    assert outcomes.count("answered 200") > 8 and "refused" in outcomes
    head, _, payload = answer.partition(b"\r\n\r\n")
    assert head.startswith(b"HTTP/1.1 200"), answer[:300]
    assert len(json.loads(payload)["signatures"]) == 1


def _serve(dep: Deployment) -> subprocess.Popen[bytes]:
    """``rssp serve`` for one host (one worker), its output appended to the host's log."""
    dep.log_path = dep.directory / "server.log"  # where Deployment.start writes it and server_log() reads it
    with open(dep.log_path, "ab") as log:
        return subprocess.Popen([*RSSP, "serve", str(dep.directory), "--port", str(dep.port), "--workers", "1"],
                                env=dep.env, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)


def _serving_workers(pid_list: list[int]) -> list[int]:
    alive = []
    for pid in pid_list:
        try:
            os.kill(pid, 0)
            alive.append(pid)
        except ProcessLookupError:
            pass
    return alive


async def test_killed_enrollments_leave_nothing_and_a_killed_master_leaves_no_worker(tmp_path):
    dep = make_deployment_minimal(tmp_path / "instance", None)
    rng = random.Random(18)
    args = ["credential", "create", str(dep.directory), "--user", "signer", "--key", "rsa-2048", "--pin", "123456"]
    for _batch in range(4):  # 20 kills, five at a time, each at a random moment of its run
        procs = [subprocess.Popen([*RSSP, *args], env=dep.env,  # noqa: ASYNC220 - Popen returns at once
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(5)]
        await asyncio.sleep(rng.uniform(1.0, 4.0))
        for proc in procs:
            await asyncio.sleep(rng.uniform(0.0, 0.3))
            proc.kill()
            proc.wait()
    before = dep.rssp_json("doctor", str(dep.directory))
    dep.start(workers=2)  # reconciles the token with the database before its workers start
    after = dep.rssp_json("doctor", str(dep.directory))
    assert after["orphans"] == [], after
    rows = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "1000")
    made = {r["target"] for r in rows if r["action"] == "credential.create"}
    assert after["credentialKeys"] == len(made) == len(made | {dep.creds["signer"].id})
    destroyed = [r for r in rows if r["action"] == "hsm.orphan_key"]
    assert len(destroyed) == len(before["orphans"])  # each orphan the start cleaned is audited
    assert "Traceback" not in dep.server_log()

    workers = workers_of(dep.proc.pid)
    assert len(workers) == 2
    os.kill(dep.proc.pid, signal.SIGKILL)  # the supervisor dies without any clean-up
    dep.proc.wait()
    deadline = time.monotonic() + 60
    while _serving_workers(workers) and time.monotonic() < deadline:
        await asyncio.sleep(0.2)
    assert _serving_workers(workers) == []
    dep.proc = None
    devpki = await asyncio.to_thread(subprocess.run, ["pgrep", "-f", f"rssp.devpki {dep.directory}"],
                                     capture_output=True, text=True)
    for pid in devpki.stdout.split():
        os.kill(int(pid), signal.SIGTERM)


async def test_two_hosts_starting_together_on_an_unmigrated_postgresql_both_come_up(tmp_path, pg_cluster):
    """Both migrate at once; one waits for the other's lock and finds the work done.

    Under the configuration seal a database that holds no seal serves nothing, so the race is
    made on a deployment's own database whose version table is dropped: both migrators see no
    ``schema_version`` (as on an empty database: the race that failed with IntegrityError) and
    run every step again (each step is idempotent). The test holds the migration lock until
    both hosts wait for it, so that they really start migrating at the same moment.
    """
    url = pg_cluster.create_database("rssp_race")
    a = _new_deployment(tmp_path / "a", url)
    hosts = [a, join(a, tmp_path / "b")]
    conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://", 1))
    await conn.execute("DROP TABLE schema_version")
    await conn.execute("SELECT pg_advisory_lock($1)", _MIGRATION_LOCK)
    waiting = ("SELECT count(*) FROM pg_locks l JOIN pg_database d ON d.oid = l.database"
               " WHERE l.locktype = 'advisory' AND NOT l.granted AND d.datname = current_database()")
    try:
        for dep in hosts:
            dep.port = free_port()
        procs = [_serve(d) for d in hosts]
        for dep, proc in zip(hosts, procs, strict=True):
            dep.proc = proc
        await wait_for(lambda: _both(conn, waiting), timeout=60)
        await conn.execute("SELECT pg_advisory_unlock($1)", _MIGRATION_LOCK)
        for dep in hosts:
            await asyncio.to_thread(dep._wait_ready)
    finally:
        await conn.close()
        for dep in hosts:
            dep.stop()
    for dep in hosts:
        assert "IntegrityError" not in dep.server_log()


async def _both(conn, waiting: str) -> bool:
    return await conn.fetchval(waiting) == 2
