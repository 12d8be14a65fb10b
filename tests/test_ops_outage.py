"""The database going away under load (#18): quick CSC 503s, recovery without a restart, and
nothing half-written: every signature a client received has its audit record, no SAD was spent
twice, no request got a 500 or hung.

PostgreSQL: a cluster of the test's own, stopped for 10 s while clients authorize and sign.
SQLite: a database locked by another program, and one that was read-only (immutable) when the
server started and becomes writable while it runs.
"""

from __future__ import annotations

import asyncio
import json
import sqlite3
import subprocess
import time
import urllib.error
import urllib.request
from collections import Counter

import aiohttp
import asyncpg
import pytest
from deployment import make_deployment_minimal
from ops_helpers import audit_rows, configure, digest, login, sad_for, sign, wait_for
from pgcluster import PgCluster

OUTAGE_SECONDS = 10


@pytest.fixture(scope="module")
def own_pg():
    cluster = PgCluster(external_url="")  # a cluster of its own even with RSSP_TEST_PG_URL: this test stops it
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()


async def _client(http, dep, token: str, cred: str, name: str, stop: asyncio.Event, log: list) -> None:
    """Authorize a fresh one-signature SAD and sign with it, again and again; record every answer."""
    i = 0
    while not stop.is_set():
        h = digest(f"{name}-{i}-{time.time()}")
        i += 1
        try:
            status, out = await sad_for(http, dep.base, token, cred, h)
            log.append(("authorize", status, out, h))
            if status == 200:
                status, out = await sign(http, dep.base, token, cred, out["SAD"], h)
                log.append(("sign", status, out, h))
        except aiohttp.ClientConnectionError as exc:  # never expected: the server stays up
            log.append(("connection", 0, repr(exc), h))
        if status != 200:
            await asyncio.sleep(0.05)


def _readyz(base: str) -> tuple[int, dict]:
    try:
        with urllib.request.urlopen(f"{base}/readyz", timeout=10) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as err:
        return err.code, json.loads(err.read())


async def _readyz_everywhere(base: str) -> list[tuple[int, dict]]:
    """/readyz six times, each on a new connection (the kernel spreads them over the workers)."""
    return [await asyncio.to_thread(_readyz, base) for _ in range(6)]


async def test_postgresql_stopped_under_load(own_pg, tmp_path, http):
    dep = make_deployment_minimal(tmp_path / "instance", own_pg.create_database("outage"))
    # Six clients on one credential: more concurrent attempts than the default five (429s), and an
    # attempt whose own count was cut stays counted (rssp.sam.give_back): not this test's subject.
    configure(dep, security={"max_failed_attempts": 1000})
    dep.start(workers=2)
    try:
        token = await login(http, dep.base, "signer", "signer-password")
        cred = dep.creds["signer"].id
        stop, log = asyncio.Event(), []
        clients = [asyncio.ensure_future(_client(http, dep, token, cred, f"c{n}", stop, log)) for n in range(6)]
        await asyncio.sleep(1)
        await asyncio.to_thread(own_pg.pause)
        down_at = len(log)
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        unready = await _readyz_everywhere(dep.base)
        await asyncio.sleep(OUTAGE_SECONDS / 2)
        await asyncio.to_thread(own_pg.resume)
        up_at = len(log)
        await wait_for(lambda: any(e[0] == "sign" and e[1] == 200 for e in log[up_at:]), timeout=60,
                       message=lambda: log[-3:])
        stop.set()
        await asyncio.gather(*clients)
        await wait_for(lambda: _all_ready(dep.base), timeout=30, interval=0.5)
        assert dep.proc.poll() is None  # recovered by itself: the same server, never restarted
    finally:
        dep.stop()
    assert all(s == 503 and body["checks"]["database"] == "failed" and body["checks"]["hsm"] == "ok"
               for s, body in unready), unready
    statuses = Counter((kind, status) for kind, status, _out, _h in log)
    assert set(statuses) <= {("authorize", 200), ("authorize", 503), ("sign", 200), ("sign", 503)}, statuses
    unavailable = [out for _k, status, out, _h in log[down_at:up_at] if status == 503]
    assert unavailable and all(out["error"] == "temporarily_unavailable" for out in unavailable)
    signed = [h.hex() for kind, status, _out, h in log if kind == "sign" and status == 200]
    assert signed
    records = [r for r in audit_rows(dep, 100000) if r["action"] == "signature.sign" and r["outcome"] == "authorized"]
    spends = Counter(hx for r in records for hx in r["detail"]["hashes"])
    assert all(spends[hx] == 1 for hx in signed), "a signature without its audit record"
    assert max(spends.values()) == 1, "a SAD spent twice"
    assert "Traceback" not in dep.server_log()


async def _all_ready(base: str) -> bool:
    return all(status == 200 for status, _ in await _readyz_everywhere(base))


def _dsn(url: str) -> str:
    return url.replace("postgresql+asyncpg://", "postgresql://", 1)


async def _failed_attempts(url: str, cred: str) -> int:
    conn = await asyncpg.connect(_dsn(url))
    try:
        return await conn.fetchval("SELECT failed_attempts FROM credentials WHERE id = $1", cred)
    finally:
        await conn.close()


async def test_a_right_pin_cut_by_an_outage_gives_its_attempt_back(own_pg, tmp_path, http):
    """One attempt allowed. The signer's right PIN was checked, then PostgreSQL stopped while the
    success was being written: 503, and once the database is back the attempt is no longer
    counted, so the signer is neither told to wait (429) nor, two minutes later, locked out."""
    url = own_pg.create_database("cut")
    dep = make_deployment_minimal(tmp_path / "instance", url)
    configure(dep, security={"max_failed_attempts": 1})
    dep.start(workers=1)
    blocker = watcher = None
    try:
        token = await login(http, dep.base, "signer", "signer-password")
        cred = dep.creds["signer"].id
        blocker, watcher = await asyncpg.connect(_dsn(url)), await asyncpg.connect(_dsn(url))
        await blocker.execute("BEGIN; LOCK TABLE audit IN SHARE MODE")  # audit inserts wait; counting does not
        cut = asyncio.ensure_future(sad_for(http, dep.base, token, cred, digest("cut by the outage")))
        waiting = ("SELECT count(*) FROM pg_stat_activity WHERE wait_event_type = 'Lock'"
                   " AND query ILIKE 'INSERT INTO audit%'")
        await wait_for(lambda: watcher.fetchval(waiting), timeout=30)  # counted, PIN checked, writing its success
        assert await _failed_attempts(url, cred) == 1
        await asyncio.to_thread(own_pg.pause)
        status, out = await cut
        assert (status, out["error"]) == (503, "temporarily_unavailable"), out
        await asyncio.to_thread(own_pg.resume)
        await wait_for(lambda: _attempts_given_back(url, cred), timeout=30)
        status, out = await sad_for(http, dep.base, token, cred, digest("the next authorization"))
        assert status == 200, out
    finally:
        for conn in (blocker, watcher):
            if conn is not None:
                conn.terminate()
        dep.stop()


async def _attempts_given_back(url: str, cred: str) -> bool:
    try:
        return await _failed_attempts(url, cred) == 0
    except (OSError, asyncpg.PostgresError):  # still starting
        return False


@pytest.fixture
def sqlite_dep(tmp_path):
    dep = make_deployment_minimal(tmp_path / "instance", None)
    yield dep
    subprocess.run(["chattr", "-i", str(dep.directory / "rssp.db")], check=False)
    dep.stop()


async def test_sqlite_locked_then_read_only_recovers_without_restart(sqlite_dep, http):
    dep = sqlite_dep
    cred = dep.creds["signer"].id
    dep.start(workers=1)
    token = await login(http, dep.base, "signer", "signer-password")
    holder = sqlite3.connect(dep.directory / "rssp.db", isolation_level=None)
    holder.execute("BEGIN EXCLUSIVE")  # another program (a backup, a careless sqlite3 shell) holds the write lock
    try:
        status, out = await sad_for(http, dep.base, token, cred, digest("while locked"))
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert (status, out["error"]) == (503, "temporarily_unavailable"), out
    status, out = await sad_for(http, dep.base, token, cred, digest("after the lock"))
    assert status == 200, out

    dep.stop()
    await asyncio.to_thread(subprocess.run, ["chattr", "+i", str(dep.directory / "rssp.db")], check=True)  # even root
    dep.start(workers=1)  # an up-to-date database is only read at start-up
    status, out = await sad_for(http, dep.base, token, cred, digest("read-only"))
    assert (status, out["error"]) == (503, "temporarily_unavailable"), out
    await asyncio.to_thread(subprocess.run, ["chattr", "-i", str(dep.directory / "rssp.db")], check=True)
    status, out = await sad_for(http, dep.base, token, cred, digest("writable again"))
    assert status == 200, out  # the same server process: its connection was reopened
    assert "Traceback" not in dep.server_log()
