"""signHash on PostgreSQL with one and two hosts against SQLite with one host, in one run (#18).

Each deployment is made with the operator's commands (``rssp init``, ``user add``, ``credential
create``; the second host with ``rssp init --join``), served with ``rssp serve --workers W``, and
driven by the same client: C concurrent tasks on keep-alive connections, each spending its own
multi-signature SAD one hash per ``signatures/signHash`` call (EC P-256), for S seconds, the
calls spread evenly over the hosts (a load balancer's round robin). Reported per deployment:
signatures/s, the ratio to SQLite on one host, p50/p99 latency, and on PostgreSQL what each
signature cost the database (committed transactions, from ``pg_stat_database``), the server
connections it held (``pg_stat_activity``) and the server CPU per signature (``/proc``).

Run: ``.venv/bin/python bench/hosts.py [--seconds S] [--clients C] [--workers W] [--out FILE]``.
On a 2-core machine everything (hosts, PostgreSQL, client) shares the cores: the numbers show
the shape (what a second host costs and gives), not a capacity.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO / "tests"))

from deployment import Deployment, make_deployment_minimal  # noqa: E402 - after the sys.path insert
from ops_helpers import join  # noqa: E402 - after the sys.path insert
from pgcluster import PgCluster  # noqa: E402 - after the sys.path insert

ECDSA_SHA256 = "1.2.840.10045.4.3.2"
SHA256 = "2.16.840.1.101.3.4.2.1"


def _tree_cpu(pid: int) -> float:
    """CPU seconds of a process and its children (the server's workers)."""
    total = 0.0
    pids = [pid, *map(int, subprocess.run(["pgrep", "-P", str(pid)], capture_output=True, text=True).stdout.split())]
    tick = os.sysconf("SC_CLK_TCK")
    for p in pids:
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
            total += (int(fields[11]) + int(fields[12])) / tick
        except (OSError, IndexError):
            pass
    return total


async def _sads(http: aiohttp.ClientSession, host: Deployment, token: str, cred: str, n: int) -> list[str]:
    out = []
    for _ in range(n):
        async with http.post(f"{host.base}/csc/v2/credentials/authorize", headers={"Authorization": f"Bearer {token}"},
                             json={"credentialID": cred, "numSignatures": 1000,
                                   "authData": [{"id": "PIN", "value": "123456"}]}) as resp:
            out.append((await resp.json())["SAD"])
    return out


async def drive(hosts: list[Deployment], seconds: float, clients: int) -> dict[str, Any]:
    """C tasks signing one hash per call for ``seconds``; rate and latency percentiles."""
    cred = hosts[0].creds["signer"].id
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=0)) as http:
        async with http.post(f"{hosts[0].base}/csc/v2/auth/login", json={},
                             headers={"Authorization": aiohttp.encode_basic_auth("signer", "signer-password")}) as r:
            token = (await r.json())["access_token"]
        sads = await _sads(http, hosts[0], token, cred, clients)
        latencies: list[float] = []
        errors = 0
        stop = time.monotonic() + seconds

        async def client(i: int) -> None:
            nonlocal errors
            base = hosts[i % len(hosts)].base
            headers = {"Authorization": f"Bearer {token}"}
            k = 0
            while time.monotonic() < stop:
                h = base64.b64encode(hashlib.sha256(f"{i}-{k}".encode()).digest()).decode()
                k += 1
                start = time.perf_counter()
                async with http.post(f"{base}/csc/v2/signatures/signHash", headers=headers, json={
                        "credentialID": cred, "SAD": sads[i], "hashes": [h], "hashAlgorithmOID": SHA256,
                        "signAlgo": ECDSA_SHA256}) as resp:
                    await resp.read()
                    if resp.status != 200:
                        errors += 1
                        continue
                latencies.append(time.perf_counter() - start)

        cpu = sum(_tree_cpu(h.server.pid) for h in hosts)
        began = time.monotonic()
        await asyncio.gather(*(client(i) for i in range(clients)))
        elapsed = time.monotonic() - began
        cpu = sum(_tree_cpu(h.server.pid) for h in hosts) - cpu
    latencies.sort()
    n = len(latencies)
    return {"signatures": n, "errors": errors, "rate": n / elapsed,
            "server_cpu_ms_per_signature": 1000 * cpu / max(n, 1),
            "p50_ms": 1000 * statistics.median(latencies), "p99_ms": 1000 * latencies[int(n * 0.99) - 1]}


def _pg_counters(cluster: PgCluster, database: str) -> tuple[int, int]:
    sql = (f"SELECT xact_commit, (SELECT count(*) FROM pg_stat_activity WHERE datname = '{database}') "  # noqa: S608
           f"FROM pg_stat_database WHERE datname = '{database}'")
    done = cluster._run([cluster._tool("psql"), "-X", "-A", "-t", "-h", cluster.host, "-p",
                         str(cluster.port), "-U", "postgres", "-d", "postgres", "-c", sql])
    commits, connections = done.stdout.strip().split("|")
    return int(commits), int(connections)


def run(seconds: float, clients: int, workers: int) -> dict[str, Any]:
    base = Path(tempfile.mkdtemp(prefix="rssp-bench-hosts-"))
    results: dict[str, Any] = {"seconds": seconds, "clients": clients, "workers_per_host": workers,
                               "cpus": os.cpu_count()}
    sqlite = make_deployment_minimal(base / "sqlite", None)
    sqlite.add_credential("signer", "signer", "ec-p256", multisign=1000)
    sqlite.start(workers=workers)
    try:
        results["sqlite_1_host"] = asyncio.run(drive([sqlite], seconds, clients))
    finally:
        sqlite.stop()
    cluster = PgCluster(external_url="")
    cluster.start()
    try:
        a = make_deployment_minimal(base / "a", cluster.create_database("bench_hosts"))
        a.add_credential("signer", "signer", "ec-p256", multisign=1000)
        b = join(a, base / "b")
        for label, hosts in (("postgresql_1_host", [a]), ("postgresql_2_hosts", [a, b])):
            for host in hosts:
                host.start(workers=workers)
            try:
                before = _pg_counters(cluster, "bench_hosts")
                result = asyncio.run(drive(hosts, seconds, clients))
                after = _pg_counters(cluster, "bench_hosts")
                result["db_transactions_per_signature"] = (after[0] - before[0]) / max(result["signatures"], 1)
                result["db_connections"] = after[1]
                results[label] = result
            finally:
                for host in hosts:
                    host.stop()
    finally:
        cluster.stop()
    for key in ("postgresql_1_host", "postgresql_2_hosts"):
        results[key]["ratio_to_sqlite"] = results[key]["rate"] / results["sqlite_1_host"]["rate"]
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    results = run(args.seconds, args.clients, args.workers)
    print(f"{'deployment':<22}{'sig/s':>9}{'ratio':>8}{'p50 ms':>9}{'p99 ms':>9}{'cpu ms/sig':>12}{'db tx/sig':>11}"
          f"{'db conns':>10}")
    for label in ("sqlite_1_host", "postgresql_1_host", "postgresql_2_hosts"):
        r = results[label]
        print(f"{label:<22}{r['rate']:>9.0f}{r.get('ratio_to_sqlite', 1.0):>8.2f}{r['p50_ms']:>9.1f}{r['p99_ms']:>9.1f}"
              f"{r['server_cpu_ms_per_signature']:>12.2f}{r.get('db_transactions_per_signature', 0):>11.2f}"
              f"{r.get('db_connections', 0):>10}")
    if args.out:
        Path(args.out).write_text(json.dumps(results, indent=2))


if __name__ == "__main__":
    main()
