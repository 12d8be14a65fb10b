"""signatures/timestamp through rssp against requests sent straight to the same TSA, in one run.

What it does (see docs/timestamps.md, "Benchmark"):

1. Creates a throw-away development instance with the operator CLI (``rssp init``, which
   bundles the test PKI, and ``user add``) and starts ``rssp serve --workers W``; the server
   starts the test PKI (certomancer, one process) whose TSA both paths use.
2. Warms both paths up, then alternates rounds of ``--seconds`` each:

   * direct: RFC 3161 requests (random SHA-256 digest and nonce, certReq) POSTed straight to
     the TSA's URL from rssp.toml; an answer counts when it is HTTP 200 with status granted;
   * rssp: ``signatures/timestamp`` with the same kind of hash, a nonce and ``timestampID``
     (so every call goes to that TSA), Bearer service token; counts HTTP 200. rssp verifies
     each token completely (imprint, nonce, CMS signature, ESSCertID, chain, EKU) before it
     answers, so this path does strictly more work.

   Both use the same number of concurrent client tasks (``--concurrency``) on keep-alive
   connections. Rates are successful calls per second; latencies are client-side per call.
3. Prints one row per path (calls, rate, p50, p99) and the ratio rssp/direct (target >= 0.8);
   ``--out FILE`` writes the same as JSON.

Run: ``.venv/bin/python bench/timestamp.py [--tsa dev-ec|dev-rsa] [--seconds S] [--rounds R]
[--concurrency C] [--workers W] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import secrets
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))

from rssp.devpki import free_port  # noqa: E402 - after the sys.path insert
from tsa_clients.rfc3161 import basic_auth, build_request  # noqa: E402 - after the sys.path insert
from tsa_clients.verify import TimeStampResp  # noqa: E402 - after the sys.path insert

SHA256 = "2.16.840.1.101.3.4.2.1"
RSSP = [sys.executable, "-m", "rssp.cli"]
TARGET = 0.8


@dataclass
class Result:
    path: str
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)
    cpu_s: dict[str, float] = field(default_factory=dict)  # CPU seconds per process group over the rounds

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        if not self.latencies_ms:
            return float("nan")
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cli(*args: str) -> str:
    return subprocess.run([*RSSP, *args], check=True, capture_output=True, text=True).stdout


def wait_ready(base: str, proc: subprocess.Popen[bytes], timeout: float = 60) -> None:
    import urllib.request

    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise SystemExit("rssp serve exited")
        try:
            req = urllib.request.Request(f"{base}/csc/v2/info", data=b"{}", method="POST",
                                         headers={"Content-Type": "application/json"})
            with urllib.request.urlopen(req, timeout=2):
                return
        except OSError:
            time.sleep(0.2)
    raise SystemExit("rssp serve did not become ready")


def _children(pid: int) -> list[int]:
    out = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1]) == pid:
                    out.append(int(entry.name))
            except (OSError, ValueError, IndexError):
                continue
    return out


def cpu_snapshot(server_pid: int) -> dict[str, float]:
    """CPU seconds so far: the test PKI (TSA) process, the rssp worker processes, this client."""
    tick = os.sysconf("SC_CLK_TCK")
    out = {"tsa": 0.0, "rssp": 0.0}
    for pid in [server_pid, *_children(server_pid)]:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes()
        except OSError:
            continue
        seconds = (int(fields[11]) + int(fields[12])) / tick
        out["tsa" if b"rssp.devpki" in cmd else "rssp"] += seconds
    times = os.times()
    out["client"] = times.user + times.system
    return out


SERVER_PID = 0


async def run_round(name: str, call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float,
                    result: Result) -> None:
    before = cpu_snapshot(SERVER_PID) if SERVER_PID else {}
    stop = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop:
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                result.calls += 1
                result.latencies_ms.append((time.perf_counter() - t0) * 1000)
            else:
                result.errors += 1

    started = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds += time.perf_counter() - started
    if before:
        after = cpu_snapshot(SERVER_PID)
        for key in after:
            result.cpu_s[key] = result.cpu_s.get(key, 0.0) + after[key] - before[key]


def direct_call(session: aiohttp.ClientSession, url: str) -> Callable[[], Awaitable[bool]]:
    async def call() -> bool:
        body = build_request(secrets.token_bytes(32), SHA256, secrets.randbits(64))
        async with session.post(url, data=body, headers={"Content-Type": "application/timestamp-query"}) as resp:
            data = await resp.read()
            if resp.status != 200:
                return False
        return TimeStampResp.load(data)["status"]["status"].native == "granted"

    return call


def rssp_call(session: aiohttp.ClientSession, base: str, token: str, tsa_id: str) -> Callable[[], Awaitable[bool]]:
    headers = {"Authorization": f"Bearer {token}"}

    async def call() -> bool:
        body = {"hash": base64.b64encode(secrets.token_bytes(32)).decode(), "hashAlgo": SHA256,
                "nonce": secrets.token_hex(8), "timestampID": tsa_id}
        async with session.post(f"{base}/csc/v2/signatures/timestamp", json=body, headers=headers) as resp:
            await resp.read()
            return resp.status == 200

    return call


async def measure(args: argparse.Namespace, base: str, tsa_url: str, token: str) -> dict[str, Result]:
    results = {"direct": Result("direct to the TSA"), "rssp": Result("through rssp (signatures/timestamp)")}
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as direct_s, \
            aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=args.concurrency)) as rssp_s:
        calls = {"direct": direct_call(direct_s, tsa_url), "rssp": rssp_call(rssp_s, base, token, args.tsa)}
        for name, call in calls.items():  # warm-up: connections, chain cache, TSA key caches
            await run_round(name, call, args.concurrency, min(2.0, args.seconds), Result(name))
        for _ in range(args.rounds):
            for name in ("direct", "rssp"):
                await run_round(name, calls[name], args.concurrency, args.seconds, results[name])
    return results


async def service_token(base: str, user: str, password: str) -> str:
    async with aiohttp.ClientSession() as s:
        headers = {"Authorization": basic_auth(user, password)}
        async with s.post(f"{base}/csc/v2/auth/login", json={}, headers=headers) as resp:
            return (await resp.json())["access_token"]


async def wait_available(base: str, token: str, tsa_id: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession(headers={"Authorization": f"Bearer {token}"}) as s:
        while time.monotonic() < deadline:
            async with s.post(f"{base}/csc/v2/timestamps/info", json={"timestampID": tsa_id}) as resp:
                if (await resp.json()).get("status") == "available":
                    return
            await asyncio.sleep(0.2)
    raise SystemExit(f"{tsa_id} never became available")


def report(args: argparse.Namespace, results: dict[str, Result]) -> dict[str, Any]:
    direct, through = results["direct"], results["rssp"]
    ratio = through.rate / direct.rate if direct.rate else 0.0
    print(f"\nsignatures/timestamp vs direct RFC 3161, TSA {args.tsa}, concurrency {args.concurrency}, "
          f"rssp workers {args.workers}, {args.rounds} x {args.seconds:.0f}s per path, {os.cpu_count()} CPUs")
    print(f"{'path':40} {'calls':>7} {'errors':>6} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in (direct, through):
        print(f"{r.path:40} {r.calls:7d} {r.errors:6d} {r.rate:8.1f} {r.pct(0.50):8.1f} {r.pct(0.99):8.1f}")
    verdict = "PASS" if ratio >= TARGET else "MISS"
    print(f"ratio rssp/direct = {ratio:.3f} (target >= {TARGET}) {verdict}")
    print("CPU ms per successful call (diagnostics):")
    for r in (direct, through):
        parts = ", ".join(f"{k} {1000 * v / max(r.calls, 1):.1f}" for k, v in sorted(r.cpu_s.items()))
        print(f"  {r.path:38} {parts}")
    return {
        "tsa": args.tsa, "concurrency": args.concurrency, "workers": args.workers, "rounds": args.rounds,
        "seconds_per_round": args.seconds, "cpus": os.cpu_count(), "python": platform.python_version(),
        "ratio": ratio, "target": TARGET, "pass": ratio >= TARGET,
        "paths": {k: {**{x: y for x, y in asdict(v).items() if x != "latencies_ms"}, "rate": v.rate,
                      "p50_ms": v.pct(0.50), "p99_ms": v.pct(0.99),
                      "mean_ms": statistics.fmean(v.latencies_ms) if v.latencies_ms else None}
                  for k, v in results.items()},
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--tsa", default="dev-ec", choices=("dev-ec", "dev-rsa"))
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=16)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--out")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="rssp-bench-timestamp-") as tmp:
        instance = Path(tmp) / "instance"
        os.environ["RSSP_OPERATOR_FILE"] = str(instance / "operator.json")  # the operator init creates
        cli("init", str(instance))
        cli("user", "add", str(instance), "bench", "--password", "bench-password")
        config = tomllib.loads((instance / "rssp.toml").read_text())
        tsa_url = config["timestamps"]["tsa"][args.tsa]["url"]
        port = free_port()
        base = f"http://127.0.0.1:{port}"
        with open(instance / "server.log", "ab") as log:
            proc = subprocess.Popen([*RSSP, "serve", str(instance), "--port", str(port), "--workers",
                                     str(args.workers)], stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        global SERVER_PID
        SERVER_PID = proc.pid
        try:
            wait_ready(base, proc)
            token = asyncio.run(service_token(base, "bench", "bench-password"))
            asyncio.run(wait_available(base, token, args.tsa))
            results = asyncio.run(measure(args, base, tsa_url, token))
        finally:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(timeout=30)
    out = report(args, results)
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
