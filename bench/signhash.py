"""signHash over HTTP against the raw PKCS#11 sign rate of the same key type, in one run.

What it does (see docs/benchmarks.md):

1. Creates a throw-away instance with the operator CLI (``rssp init``, ``user add``,
   ``credential create``): one user, an RSA-2048 and an EC P-256 credential, both level 1
   (PIN) with ``--multisign 50``.
2. For each key type and for ``rssp serve --workers 1`` and ``--workers 2``:

   * raw limit: :func:`raw_pkcs11.raw_sign_rate` on the same token and key, as many
     processes as server workers, before the HTTP phases and (not with ``--quick``) after
     them, with the server stopped;
   * starts the server on a free loopback port and opens one keep-alive connection per
     client task, spread evenly over the workers (SO_REUSEPORT would otherwise hand the
     connections out by a hash of the port numbers);
   * for n = 1 and n = 50 hashes per call: a warm-up, then a pool of SADs made with
     ``credentials/authorize`` (hashes bound; the argon2 PIN check costs 0.1-0.35 s per
     authorize here, so this is outside the timed part), then ``signatures/signHash`` calls from concurrent
     tasks (prepared requests on raw keep-alive connections, on uvloop when installed: see
     :class:`Connection`) for a fixed time. Throughput counts signatures of successful calls
     only; latency is the client-side time of each call.

3. Prints one row per (key, workers, n) with the HTTP rate, the raw rate, their ratio, the
   target ratio, PASS/MISS (informational: the exit status is 0), the bound (the highest
   ratio a server that verifies every signature could reach here: :func:`ratio_bound`, from
   the raw rate and :func:`verify_rate` measured in the same run), for single hashes the
   http bound (:func:`http_floor`: ``info`` calls/s over the raw rate), p50/p99 latency; then a
   diagnostics table (client and server CPU per call, event-loop share, connection
   balance). ``--out FILE`` writes the same as JSON.

Run: ``.venv/bin/python bench/signhash.py [--seconds S] [--quick] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import hashlib
import json
import math
import os
import platform
import resource
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent
if str(REPO) not in sys.path:  # run as a script: make ``rssp`` importable from the repo
    sys.path.insert(0, str(REPO))
BENCH = Path(__file__).resolve().parent
for extra in (BENCH, REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

import raw_pkcs11  # noqa: E402  (bench/raw_pkcs11.py)
from deployment import TEST_ARGON2, stop_process_group  # noqa: E402 - the test suite's helpers, shared
from rssp.devpki import free_port  # noqa: E402
from rssp.hsm import DEFAULT_MODULE, SignMechanism  # noqa: E402

SHA256_OID = "2.16.840.1.101.3.4.2.1"
TOKEN_LABEL = "rssp"
USER, PASSWORD, PIN = "bench", "bench-password-1", "246810"
MULTISIGN = 50




@dataclass(frozen=True)
class KeyCase:
    name: str
    spec: str  # rssp credential create --key
    sign_algo: str  # signHash signAlgo
    mechanism: SignMechanism  # the same, for raw_sign_rate
    target_single: float
    target_batch: float


CASES = [
    KeyCase("RSA-2048", "rsa-2048", "1.2.840.113549.1.1.11", SignMechanism("pkcs1v15", "sha256"), 0.5, 0.8),
    KeyCase("EC P-256", "ec-p256", "1.2.840.10045.4.3.2", SignMechanism("ecdsa", "sha256"), 0.25, 0.8),
]


# --------------------------------------------------------------------------------------------
# The instance and the server, through the operator CLI
# --------------------------------------------------------------------------------------------

def _env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}  # this bench is SQLite
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO), env.get("PYTHONPATH")]))
    return env


def rssp(*args: str) -> str:
    done = subprocess.run([sys.executable, "-m", "rssp.cli", *args], env=_env(), cwd=REPO,
                          capture_output=True, text=True, timeout=300)
    if done.returncode != 0:
        raise RuntimeError(f"rssp {' '.join(args[:2])} failed: {done.stderr.strip()[-2000:]}")
    return done.stdout


@dataclass
class Instance:
    directory: Path
    creds: dict[str, str] = field(default_factory=dict)  # key spec -> credential ID
    key_ids: dict[str, str] = field(default_factory=dict)  # key spec -> HSM key ID (hex CKA_ID)
    public_keys: dict[str, bytes] = field(default_factory=dict)  # key spec -> SPKI DER

    @property
    def hsm_pin(self) -> str:
        return (self.directory / "hsm-pin").read_text(encoding="utf-8").strip()

    @property
    def softhsm2_conf(self) -> str:
        return str(self.directory / "softhsm2.conf")


def make_instance(directory: Path) -> Instance:
    # --production: no bundled test PKI (TSA/OCSP processes, TSA probes) running beside the server
    help_text = rssp("init", "--help")
    production = ["--production"] if "--production" in help_text else []
    # The SAD pool is made with credentials/authorize, whose PIN check is argon2id: at the default
    # cost (0.14 s a check) making SADs ended the batch phases after 1.5 s. The test suite's cheap
    # cost (rssp init --set, where the tree has it) leaves signHash, which checks no PIN, as it is.
    cheap = [f"--set={setting}" for setting in TEST_ARGON2] if "--set" in help_text else []
    os.environ["RSSP_OPERATOR_FILE"] = str(directory / "operator.json")  # init writes it; privileged commands use it
    rssp("init", str(directory), *production, *cheap)
    rssp("user", "add", str(directory), USER, "--password", PASSWORD)
    inst = Instance(directory)
    for case in CASES:
        out = json.loads(rssp("credential", "create", str(directory), "--user", USER, "--key", case.spec,
                              "--level", "1", "--pin", PIN, "--multisign", str(MULTISIGN), "--json"))
        inst.creds[case.spec] = out["credentialID"]
    with sqlite3.connect(directory / "rssp.db") as db:
        for spec, cred_id in inst.creds.items():
            key_id, spki = db.execute("SELECT hsm_key_id, public_key FROM credentials WHERE id = ?",
                                      (cred_id,)).fetchone()
            inst.key_ids[spec], inst.public_keys[spec] = key_id, bytes(spki)
    return inst


class Server:
    """``rssp serve DIR --port P --workers N`` in its own process group."""

    def __init__(self, inst: Instance, workers: int) -> None:
        self.inst, self.workers = inst, workers
        self.port = free_port()
        self.log_path = inst.directory / f"serve-{self.port}.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self.worker_pids: list[int] = []

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> None:
        with open(self.log_path, "ab") as log:
            self.proc = subprocess.Popen(
                [sys.executable, "-m", "rssp.cli", "serve", str(self.inst.directory), "--port", str(self.port),
                 "--workers", str(self.workers)],
                env=_env(), cwd=REPO, stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
        deadline = time.monotonic() + 90
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"rssp serve exited: {self.log_path.read_text(errors='replace')[-3000:]}")
            # aiohttp binds only after the app started (HSM login, DB), so a worker that
            # listens is a worker that is ready; with SO_REUSEPORT each has its own socket.
            pids = listening_pids(self.port)
            if len(pids) == self.workers and self._answers():
                self.worker_pids = sorted(pids)
                return
            time.sleep(0.1)
        raise RuntimeError("rssp serve did not become ready")

    def _answers(self) -> bool:
        req = urllib.request.Request(f"{self.base}/csc/v2/info", data=b"{}", method="POST",
                                     headers={"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return resp.status == 200
        except OSError:
            return False

    def stop(self) -> None:
        stop_process_group(self.proc)
        self.proc = None


# --------------------------------------------------------------------------------------------
# /proc: who owns which socket, CPU time per process and thread
# --------------------------------------------------------------------------------------------

CLK_TCK = os.sysconf("SC_CLK_TCK")


def _tcp_sockets(port: int) -> list[tuple[str, int, int]]:
    """(state, remote port, inode) of the IPv4 sockets whose local port is ``port``."""
    out = []
    with open("/proc/net/tcp", encoding="ascii") as fh:
        next(fh)
        for line in fh:
            parts = line.split()
            local, remote, state, inode = parts[1], parts[2], parts[3], int(parts[9])
            if int(local.split(":")[1], 16) == port:
                out.append((state, int(remote.split(":")[1], 16), inode))
    return out


def _socket_owners(inodes: set[int]) -> dict[int, int]:
    """inode -> pid, for the given socket inodes (scans /proc/*/fd)."""
    owners: dict[int, int] = {}
    for pid_dir in Path("/proc").iterdir():
        if not pid_dir.name.isdigit():
            continue
        try:
            for fd in (pid_dir / "fd").iterdir():
                target = os.readlink(fd)
                if target.startswith("socket:["):
                    inode = int(target[8:-1])
                    if inode in inodes:
                        owners[inode] = int(pid_dir.name)
        except OSError:
            continue
    return owners


def listening_pids(port: int) -> set[int]:
    inodes = {inode for state, _, inode in _tcp_sockets(port) if state == "0A"}
    return set(_socket_owners(inodes).values()) if inodes else set()


def connection_owners(port: int) -> dict[int, int]:
    """Client port -> server pid, for the established connections to ``port``."""
    socks = [(rport, inode) for state, rport, inode in _tcp_sockets(port) if state == "01" and inode]
    owners = _socket_owners({inode for _, inode in socks})
    return {rport: owners[inode] for rport, inode in socks if inode in owners}


# Server threads by name prefix (``thread_name_prefix`` of their executors).
THREAD_ROLES = {"pkcs11": "hsm", "rssp-sqlite": "db", "rssp-verify": "verify"}


def thread_cpu(pid: int) -> dict[int, tuple[str, float]]:
    """Name and CPU seconds (user + system) of each thread of ``pid``."""
    out = {}
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            stat = (task / "stat").read_text()
        except OSError:
            continue
        name = stat[stat.index("(") + 1:stat.rindex(")")]
        fields = stat.rsplit(")", 1)[1].split()
        out[int(task.name)] = (name, (int(fields[11]) + int(fields[12])) / CLK_TCK)
    return out


def _role(pid: int, tid: int, name: str) -> str:
    if tid == pid:
        return "loop"
    return next((role for prefix, role in THREAD_ROLES.items() if name.startswith(prefix)), "other")


def cpu_snapshot(pids: list[int]) -> dict[int, dict[int, tuple[str, float]]]:
    return {pid: thread_cpu(pid) for pid in pids}


def cpu_delta(before: dict[int, dict[int, tuple[str, float]]],
              after: dict[int, dict[int, tuple[str, float]]]) -> dict[str, Any]:
    """Per worker: total CPU s and CPU s by thread role (loop, hsm, db, verify, other)."""
    workers = []
    for pid, threads in after.items():
        roles = dict.fromkeys(("loop", "hsm", "db", "verify", "other"), 0.0)
        for tid, (name, cpu) in threads.items():
            roles[_role(pid, tid, name)] += cpu - before.get(pid, {}).get(tid, ("", 0.0))[1]
        workers.append({"pid": pid, "total": sum(roles.values()), **roles})
    return {"workers": workers, "total": sum(w["total"] for w in workers)}


def machine_busy() -> float:
    """CPU seconds spent busy by the whole machine, all CPUs (from /proc/stat)."""
    with open("/proc/stat", encoding="ascii") as fh:
        fields = [int(x) for x in fh.readline().split()[1:]]
    idle = fields[3] + fields[4]  # idle + iowait
    return (sum(fields[:8]) - idle) / CLK_TCK


def own_cpu() -> float:
    """CPU seconds of this process and of its reaped children (raw_sign_rate's processes)."""
    own, kids = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + kids.ru_utime + kids.ru_stime


# --------------------------------------------------------------------------------------------
# The client
# --------------------------------------------------------------------------------------------

def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


class Connection:
    """One keep-alive HTTP/1.1 connection that sends prepared requests and reads the answers.

    Why not aiohttp's client: the load generator runs on the same two cores as the server,
    and aiohttp's client spent ~140 us of CPU per call, about a quarter of the server's own
    per-request work; every microsecond here is taken from the server being measured. The
    server always answers with Content-Length (aiohttp's ``json_response``), so a response is
    a status line, headers up to the blank line, and that many bytes.
    """

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self.port: int = writer.get_extra_info("sockname")[1]

    @classmethod
    async def open(cls, host: str, port: int) -> Connection:
        reader, writer = await asyncio.open_connection(host, port)
        return cls(reader, writer)

    async def post(self, request: bytes) -> tuple[int, bytes]:
        self.writer.write(request)
        head = await self.reader.readuntil(b"\r\n\r\n")
        status = int(head[9:12])
        length = 0
        for line in head.split(b"\r\n")[1:]:
            name, _, value = line.partition(b":")
            if name.strip().lower() == b"content-length":
                length = int(value)
        return status, await self.reader.readexactly(length)

    def close(self) -> None:
        self.writer.close()


class Client:
    """One connection per task, balanced over the workers."""

    def __init__(self, server: Server, token: str) -> None:
        self.server = server
        self.token = token
        self.connections: list[Connection] = []

    def request(self, path: str, body: bytes) -> bytes:
        head = (f"POST {path} HTTP/1.1\r\nHost: 127.0.0.1:{self.server.port}\r\n"
                f"Content-Type: application/json\r\nAuthorization: Bearer {self.token}\r\n"
                f"Content-Length: {len(body)}\r\n\r\n")
        return head.encode("ascii") + body

    async def open(self, tasks: int) -> dict[int, int]:
        """Open ``tasks`` connections with as equal a share per worker as possible."""
        workers = self.server.worker_pids
        quota = {pid: tasks // len(workers) + (1 if i < tasks % len(workers) else 0) for i, pid in enumerate(workers)}
        count = dict.fromkeys(workers, 0)
        for _attempt in range(tasks * 20):
            if len(self.connections) == tasks:
                break
            conn = await Connection.open("127.0.0.1", self.server.port)
            await conn.post(self.request("/csc/v2/info", b"{}"))  # accepted by now: its owner is known
            owner = connection_owners(self.server.port).get(conn.port)
            if owner is None:  # cannot tell: take it as it is
                self.connections.append(conn)
            elif owner in count and count[owner] < quota[owner]:
                count[owner] += 1
                self.connections.append(conn)
            else:
                conn.close()
        if len(self.connections) != tasks:
            raise RuntimeError(f"could not spread {tasks} connections over {len(workers)} workers: {count}")
        return count

    def distribution(self) -> dict[int, int]:
        owners = connection_owners(self.server.port)
        dist = dict.fromkeys(self.server.worker_pids, 0)
        for conn in self.connections:
            if owners.get(conn.port) in dist:
                dist[owners[conn.port]] += 1
        return dist

    async def close(self) -> None:
        for conn in self.connections:
            conn.close()
        self.connections = []

    async def run(self, url_path: str, bodies: list[bytes], seconds: float | None,
                  keep: int = 0) -> dict[str, Any]:
        """Send ``bodies`` (each once) from all connections until they run out or time is up."""
        requests = iter([(body, self.request(url_path, body)) for body in bodies])  # built before the clock
        latencies: list[float] = []
        kept: list[tuple[bytes, bytes]] = []
        errors: list[str] = []
        state = {"last": 0.0, "exhausted": False}
        start = time.perf_counter()
        deadline = start + seconds if seconds is not None else math.inf

        async def task(conn: Connection) -> None:
            while time.perf_counter() < deadline:
                item = next(requests, None)
                if item is None:
                    state["exhausted"] = True
                    return
                body, request = item
                t0 = time.perf_counter()
                try:
                    status, data = await conn.post(request)
                except (OSError, asyncio.IncompleteReadError, asyncio.LimitOverrunError, ValueError) as exc:
                    status, data = 0, f"{type(exc).__name__}: {exc}".encode()
                t1 = time.perf_counter()
                if status == 200:
                    latencies.append(t1 - t0)
                    state["last"] = t1
                    if len(kept) < keep:
                        kept.append((body, data))
                elif len(errors) < 5:
                    errors.append(f"{status} {data[:200].decode(errors='replace')}")
                else:
                    errors.append("")
                if status == 0:
                    return  # the connection is gone

        cpu0 = time.process_time()
        await asyncio.gather(*(task(c) for c in self.connections))
        end = time.perf_counter()
        return {"ok": len(latencies), "errors": errors, "latencies": latencies, "kept": kept,
                "elapsed": (state["last"] or end) - start, "wall": end - start,
                "client_cpu": time.process_time() - cpu0, "exhausted": state["exhausted"]}


async def login(base: str) -> str:
    import aiohttp

    async with aiohttp.ClientSession() as session:
        auth = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        async with session.post(f"{base}/csc/v2/auth/login", json={"rememberMe": False}, headers=auth) as resp:
            body = await resp.json()
            if resp.status != 200:
                raise RuntimeError(f"auth/login: {resp.status} {body}")
            return body["access_token"]


async def authorize_pool(base: str, token: str, cred_id: str, sads: int,
                         concurrency: int) -> list[tuple[str, list[bytes]]]:
    """``sads`` SADs for 50 signatures each, each bound to 50 fresh random SHA-256 digests."""
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    out: list[tuple[str, list[bytes]]] = []
    remaining = [sads]

    async def task(session: aiohttp.ClientSession) -> None:
        while remaining[0] > 0:
            remaining[0] -= 1
            digests = [os.urandom(32) for _ in range(MULTISIGN)]
            body = {"credentialID": cred_id, "numSignatures": MULTISIGN, "hashes": [b64(d) for d in digests],
                    "hashAlgorithmOID": SHA256_OID, "authData": [{"id": "PIN", "value": PIN}]}
            async with session.post(f"{base}/csc/v2/credentials/authorize", json=body, headers=headers) as resp:
                data = await resp.json(content_type=None)
                if resp.status != 200:
                    raise RuntimeError(f"credentials/authorize: {resp.status} {data}")
            out.append((data["SAD"], digests))

    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        await asyncio.gather(*(task(session) for _ in range(min(concurrency, sads))))
    return out


def sign_bodies(cred_id: str, sign_algo: str, pool: list[tuple[str, list[bytes]]], n: int) -> list[bytes]:
    """signHash bodies spending the pool, ``n`` bound hashes per call.

    Calls are interleaved across SADs (call i of every SAD before call i+1 of any), so that
    concurrent requests spend different SADs, as independent signers would.
    """
    per_sad = MULTISIGN // n
    bodies = []
    for i in range(per_sad):
        for sad, digests in pool:
            chunk = digests[i * n:(i + 1) * n]
            bodies.append(json.dumps({"credentialID": cred_id, "SAD": sad, "hashes": [b64(d) for d in chunk],
                                      "hashAlgorithmOID": SHA256_OID, "signAlgo": sign_algo},
                                     separators=(",", ":")).encode())
    return bodies


def verify_rate(case: KeyCase, seconds: float) -> float:
    """Signatures per second that one thread checks with rssp's own check, for this key type.

    The server verifies every value it returns (rssp.sam.verify), so each signature costs it
    at least a sign plus a verify: together with the raw rate this bounds the ratio any
    verifying server could reach on this machine (:func:`ratio_bound`). A fresh key of the same
    type stands in for the credential's: the cost depends on the type only.
    """
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed

    from rssp.sam.verify import signature_valid

    digest = hashlib.sha256(b"rssp bench").digest()
    key: ec.EllipticCurvePrivateKey | rsa.RSAPrivateKey
    if case.mechanism.scheme == "ecdsa":
        key = ec.generate_private_key(ec.SECP256R1())
        signature = key.sign(digest, ec.ECDSA(Prehashed(hashes.SHA256())))
    else:
        key = rsa.generate_private_key(public_exponent=65537, key_size=int(case.spec.split("-")[1]))
        signature = key.sign(digest, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
    spki = key.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
    count, start = 0, time.perf_counter()
    deadline = start + seconds
    while time.perf_counter() < deadline:
        for _ in range(50):
            if not signature_valid(spki, case.mechanism, digest, signature):
                raise RuntimeError("the benchmark's own signature did not verify")
        count += 50
    return count / (time.perf_counter() - start)


def ratio_bound(raw: float, verify: float, workers: int, cores: int) -> float:
    """The highest ratio a server that signs on the HSM and verifies each value can reach.

    Each raw process keeps one core signing, so one signature costs ``workers / raw`` seconds
    of CPU; the server adds ``1 / verify`` for its check. ``cores`` CPUs then give at most
    ``cores / (workers / raw + 1 / verify)`` signatures/s, and never more than raw. HTTP, the
    database and the audit record come on top, so real ratios stay below this.
    """
    return min(1.0, cores / (workers / raw + 1 / verify) / raw)


def verify_kept(spki: bytes, case: KeyCase, kept: list[tuple[bytes, bytes]]) -> int:
    """Check the returned signature values of a few calls against the credential's key."""
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.hazmat.primitives.asymmetric.utils import Prehashed
    from cryptography.hazmat.primitives.serialization import load_der_public_key

    key = load_der_public_key(spki)
    checked = 0
    for body, data in kept:
        digests = [base64.b64decode(h) for h in json.loads(body)["hashes"]]
        sigs = [base64.b64decode(s) for s in json.loads(data)["signatures"]]
        if len(sigs) != len(digests):
            raise RuntimeError("signHash returned a different number of signatures than hashes")
        for d, s in zip(digests, sigs, strict=True):
            if case.mechanism.scheme == "ecdsa":
                assert isinstance(key, ec.EllipticCurvePublicKey), key
                key.verify(s, d, ec.ECDSA(Prehashed(hashes.SHA256())))
            else:
                assert isinstance(key, rsa.RSAPublicKey), key
                key.verify(s, d, padding.PKCS1v15(), Prehashed(hashes.SHA256()))
            checked += 1
    return checked


# --------------------------------------------------------------------------------------------
# One benchmark row
# --------------------------------------------------------------------------------------------

CLIENT_BOUND_PCT = 70.0  # client CPU (% of one core) above which the client may be the limit


@dataclass
class Row:
    key: str
    workers: int
    hashes_per_call: int
    http_sigs_per_s: float
    raw_sigs_per_s: float = math.nan  # mean of the raw runs bracketing the HTTP phases
    raw_runs: list[float] = field(default_factory=list)
    ratio: float = math.nan
    target: float = math.nan
    verify_per_s: float = math.nan  # one thread, rssp's check, same key type (verify_rate)
    bound: float = math.nan  # ratio_bound: the most a verifying server can reach here
    info_calls_per_s: float = math.nan  # single-hash rows: http_floor on the same connections
    http_bound: float = math.nan  # info_calls_per_s / raw: what single hashes reach at best here
    verdict: str = ""
    p50_ms: float = math.nan
    p99_ms: float = math.nan
    calls: int = 0
    calls_per_s: float = 0.0
    seconds: float = 0.0  # length of the timed phase actually measured
    concurrency: int = 0
    errors: int = 0
    pool_exhausted: bool = False
    client_cpu_pct: float = 0.0  # % of one core, timed phase
    client_cpu_us_per_call: float = 0.0
    client_bound: bool = False
    server_cpu_pct: float = 0.0  # all workers together, % of one core (200 = both cores)
    server_cpu_us_per_call: float = 0.0
    server_cpu_us_per_sig: float = 0.0
    # role (loop, hsm, db, verify, other) -> per worker: CPU of those threads, % of one core
    thread_pct: dict[str, list[float]] = field(default_factory=dict)
    connections: list[int] = field(default_factory=list)  # per worker, after the phase
    foreign_cpu_pct: float = 0.0  # CPU used by other processes on the machine during the phase
    raw_foreign_cpu_pct: list[float] = field(default_factory=list)  # the same, during the raw runs
    verified: int = 0
    sads: int = 0
    authorize_s: float = 0.0
    profiles: list[str] = field(default_factory=list)


def percentile(values: list[float], q: float) -> float:
    if not values:
        return math.nan
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _py_spy() -> str | None:
    found = shutil.which("py-spy")
    local = Path(sys.executable).parent / "py-spy"
    return found or (str(local) if local.exists() else None)


def start_profilers(server: Server, seconds: float, prefix: Path) -> list[tuple[subprocess.Popen[bytes], Path]]:
    exe = _py_spy()
    if exe is None:
        raise RuntimeError("--py-spy needs py-spy (pip install py-spy)")
    out = []
    for pid in server.worker_pids:
        path = prefix.with_name(f"{prefix.name}-{pid}.txt")
        proc = subprocess.Popen([exe, "record", "-p", str(pid), "-d", str(math.ceil(seconds) + 1), "-r", "100",
                                 "--nonblocking", "--threads", "-f", "raw", "-o", str(path)],
                                stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        out.append((proc, path))
    return out


async def measure(inst: Instance, server: Server, case: KeyCase, n: int, raw_hint: float,
                  args: argparse.Namespace) -> Row:
    """Warm up, authorize a pool of SADs, then time signHash calls spending it."""
    seconds = args.seconds
    concurrency = args.concurrency if n == 1 else args.batch_concurrency
    cred_id = inst.creds[case.spec]
    token = await login(server.base)
    client = Client(server, token)
    auth_concurrency = 2 * server.workers  # argon2 runs 4 lanes: more in parallel only queues
    profilers: list[tuple[subprocess.Popen[bytes], Path]] = []
    try:
        await client.open(concurrency)
        # Warm-up (connections, key-handle and public-key caches, SQL compilation caches),
        # which also estimates the call rate to size the SAD pool of the timed phase.
        warm_calls = 3 * concurrency if n == 1 else concurrency + 4
        warm_pool = await authorize_pool(server.base, token, cred_id, math.ceil(warm_calls * n / MULTISIGN),
                                         auth_concurrency)
        warm = await client.run("/csc/v2/signatures/signHash", sign_bodies(cred_id, case.sign_algo, warm_pool, n),
                                None)
        if warm["errors"] or not warm["ok"]:
            raise RuntimeError(f"signHash failed during warm-up: {(warm['errors'] or ['no call'])[0]}")
        warm_rate = warm["ok"] / warm["elapsed"]  # calls/s
        info_rate = await http_floor(client, seconds) if n == 1 else math.nan
        # The pool: a multiple of the warm-up rate (warm-up is the slow part; single-hash SADs
        # are cheap, 50 calls each) but never more than the raw rate allows, and never more
        # SADs than ``sad_budget`` seconds of authorize make.
        margin = 4.0 if n == 1 else 2.0
        calls = min(margin * warm_rate * seconds, 1.05 * raw_hint * seconds / n) + concurrency
        t0 = time.perf_counter()
        probe = await authorize_pool(server.base, token, cred_id, auth_concurrency, auth_concurrency)
        per_sad = (time.perf_counter() - t0) / len(probe)
        sads = min(math.ceil(calls * n / MULTISIGN), int(args.sad_budget / per_sad))
        sads = max(sads, math.ceil(3 * concurrency * n / MULTISIGN))  # at least 3 calls per task
        pool = probe[:sads] + await authorize_pool(server.base, token, cred_id, max(0, sads - len(probe)),
                                                   auth_concurrency)
        authorize_s = time.perf_counter() - t0
        bodies = sign_bodies(cred_id, case.sign_algo, pool, n)
        if args.py_spy:
            profilers = start_profilers(server, seconds, args.py_spy / f"{case.spec}-w{server.workers}-n{n}")
            await asyncio.sleep(0.3)  # let py-spy attach
        before, busy0 = cpu_snapshot(server.worker_pids), machine_busy()
        result = await client.run("/csc/v2/signatures/signHash", bodies, seconds, keep=3)
        after, busy1 = cpu_snapshot(server.worker_pids), machine_busy()
        connections = list(client.distribution().values())
    finally:
        await client.close()
        for proc, _ in profilers:
            proc.wait()
    verified = verify_kept(inst.public_keys[case.spec], case, result["kept"])
    ok, elapsed, wall = result["ok"], result["elapsed"], result["wall"]
    cpu = cpu_delta(before, after)
    lat = result["latencies"]
    client_pct = 100 * result["client_cpu"] / wall
    return Row(
        key=case.name, workers=server.workers, hashes_per_call=n,
        http_sigs_per_s=ok * n / elapsed if elapsed > 0 else 0.0,
        target=case.target_single if n == 1 else case.target_batch, info_calls_per_s=info_rate,
        p50_ms=percentile(lat, 0.50) * 1e3, p99_ms=percentile(lat, 0.99) * 1e3,
        calls=ok, calls_per_s=ok / elapsed if elapsed > 0 else 0.0, seconds=elapsed, concurrency=concurrency,
        errors=len(result["errors"]), pool_exhausted=result["exhausted"],
        client_cpu_pct=client_pct, client_cpu_us_per_call=1e6 * result["client_cpu"] / max(ok, 1),
        client_bound=client_pct >= CLIENT_BOUND_PCT,
        server_cpu_pct=100 * cpu["total"] / wall, server_cpu_us_per_call=1e6 * cpu["total"] / max(ok, 1),
        server_cpu_us_per_sig=1e6 * cpu["total"] / max(ok * n, 1),
        thread_pct={role: [round(100 * w[role] / wall, 1) for w in cpu["workers"]]
                    for role in ("loop", "hsm", "db", "verify", "other")},
        connections=connections,
        foreign_cpu_pct=max(0.0, 100 * (busy1 - busy0 - cpu["total"] - result["client_cpu"]) / wall),
        verified=verified, sads=len(pool), authorize_s=authorize_s, profiles=[str(p) for _, p in profilers],
    )


async def http_floor(client: Client, seconds: float) -> float:
    """Calls/s of ``info`` on the same connections: the cheapest CSC call (no token, database or HSM).

    A single-hash signHash goes through the same HTTP parsing, middleware, dispatch and JSON
    response on the event loop (with a smaller response) and then spends a SAD, signs and
    verifies, so this rate over the raw sign rate (the ``http`` column) is about the most
    single-hash calls can reach with this HTTP stack on this machine.
    """
    phase = min(seconds, 1.5)
    result = await client.run("/csc/v2/info", [b"{}"] * int(40_000 * phase * client.server.workers), phase)
    if result["errors"] or not result["ok"]:
        raise RuntimeError(f"info failed: {(result['errors'] or ['no call'])[0]}")
    return result["ok"] / result["elapsed"]


def raw_rate(inst: Instance, case: KeyCase, seconds: float, processes: int) -> tuple[float, float]:
    """raw_sign_rate (in a watchdog thread: a failed child must not hang the whole run).

    Returns the rate and the CPU that other processes used meanwhile (% of one core).
    """
    import multiprocessing as mp

    box: dict[str, Any] = {}

    def target() -> None:
        try:
            box["rate"] = raw_pkcs11.raw_sign_rate(DEFAULT_MODULE, inst.softhsm2_conf, TOKEN_LABEL, inst.hsm_pin,
                                                   inst.key_ids[case.spec], case.mechanism, seconds, processes)
        except Exception as exc:  # noqa: BLE001
            box["error"] = exc

    busy0, own0, t0 = machine_busy(), own_cpu(), time.perf_counter()
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(seconds + 90)
    if thread.is_alive() or "error" in box:
        for child in mp.active_children():
            child.kill()
        raise RuntimeError(f"raw_sign_rate failed: {box.get('error', 'timed out')}")
    wall = time.perf_counter() - t0
    foreign = max(0.0, 100 * (machine_busy() - busy0 - (own_cpu() - own0)) / wall)
    return box["rate"], foreign


# --------------------------------------------------------------------------------------------
# Output
# --------------------------------------------------------------------------------------------

def _fmt(values: Sequence[float]) -> str:
    return "/".join(f"{v:.0f}" for v in values)


def print_table(rows: list[Row]) -> None:
    print()
    print(f"{'key':9} {'workers':>7} {'hashes/call':>11} {'HTTP sig/s':>11} {'raw sig/s':>10} {'ratio':>6} "
          f"{'target':>6} {'':4} {'bound':>6} {'http':>6} {'p50 ms':>8} {'p99 ms':>8}")
    for r in rows:
        http = f"{r.http_bound:6.2f}" if not math.isnan(r.http_bound) else f"{'-':>6}"
        print(f"{r.key:9} {r.workers:7d} {r.hashes_per_call:11d} {r.http_sigs_per_s:11,.0f} {r.raw_sigs_per_s:10,.0f} "
              f"{r.ratio:6.2f} {r.target:6.2f} {r.verdict:4} {r.bound:6.2f} {http} {r.p50_ms:8.1f} {r.p99_ms:8.1f}")
    print()
    print("bound = the highest ratio a server that verifies every signature could reach on this machine:\n"
          "sign (workers / raw) plus one verify with rssp's check (one thread, same key type) per signature,\n"
          "spread over all CPUs; HTTP and the database come on top of it. http (single hashes) = calls/s of\n"
          "info, the cheapest CSC call (no token, database or HSM), on the same connections, over raw sig/s.")
    for spec in dict.fromkeys(r.key for r in rows):
        rate = next(r.verify_per_s for r in rows if r.key == spec)
        print(f"  {spec}: verify {rate:,.0f} sig/s on one thread")
    print()
    print("Diagnostics of the timed phases: calls/s; c = client tasks (one connection each); client CPU (% of\n"
          "one core, us per call); server CPU of all workers (% of one core, per call, per signature); per worker:\n"
          "CPU % of the event-loop thread, the PKCS#11 thread, the SQLite thread, the verifier thread and\n"
          "any other threads, connections; other = CPU\n"
          "of unrelated processes on the machine (% of one core) during the HTTP phase and the raw runs; raw\n"
          "runs (sig/s); SADs made for the phase (seconds of credentials/authorize); signatures verified.")
    for r in rows:
        flags = []
        if r.errors:
            flags.append(f"{r.errors} errors")
        if r.pool_exhausted:
            flags.append(f"SAD pool ran out after {r.seconds:.1f}s")
        if r.client_bound:
            flags.append("client near saturation")
        if not math.isnan(r.info_calls_per_s):
            flags.append(f"info {r.info_calls_per_s:,.0f} calls/s")
        print(f"{r.key:9} w={r.workers} n={r.hashes_per_call:<2d} {r.calls_per_s:6.0f} calls/s c={r.concurrency:<2d} "
              f"client {r.client_cpu_pct:3.0f}% {r.client_cpu_us_per_call:5.0f}us  "
              f"server {r.server_cpu_pct:3.0f}% {r.server_cpu_us_per_call:6.0f}us/call "
              f"{r.server_cpu_us_per_sig:5.0f}us/sig  "
              + "".join(f"{role} {_fmt(pcts)}% " for role, pcts in r.thread_pct.items())
              + f" conns {_fmt(r.connections)}  "
              f"other {r.foreign_cpu_pct:.0f}% (raw runs {_fmt(r.raw_foreign_cpu_pct)}%)  raw {_fmt(r.raw_runs)}  "
              f"SADs {r.sads} ({r.authorize_s:.0f}s)  verified {r.verified}"
              + (f"  [{'; '.join(flags)}]" if flags else ""))


# --------------------------------------------------------------------------------------------
# Main
# --------------------------------------------------------------------------------------------

async def _measure_server(inst: Instance, server: Server, case: KeyCase, raw_hint: float,
                          args: argparse.Namespace) -> list[Row]:
    rows = []
    for n in (1, MULTISIGN):
        row = await measure(inst, server, case, n, raw_hint, args)
        rows.append(row)
        print(f"  HTTP workers={server.workers} n={n:<2d}: {row.http_sigs_per_s:9,.0f} sig/s, "
              f"p50 {row.p50_ms:.1f} ms, p99 {row.p99_ms:.1f} ms", flush=True)
    return rows


def _loop_factory() -> Any:
    """uvloop for the load generator too, when installed: it leaves more CPU to the server."""
    try:
        import uvloop
    except ImportError:
        return None
    return uvloop.new_event_loop


def run_case(inst: Instance, case: KeyCase, workers: int, args: argparse.Namespace) -> list[Row]:
    """raw, HTTP n=1 and n=50, raw again (not with --quick): the raw runs bracket the HTTP ones."""
    raws, foreign = [], []
    rate, other = raw_rate(inst, case, args.raw_seconds, workers)
    raws.append(rate)
    foreign.append(other)
    print(f"{case.name}: raw PKCS#11 with {workers} process(es): {rate:,.0f} sig/s", flush=True)
    server = Server(inst, workers)
    server.start()
    try:
        with asyncio.Runner(loop_factory=_loop_factory()) as runner:
            rows = runner.run(_measure_server(inst, server, case, rate, args))
    finally:
        server.stop()
    if not args.quick:
        rate, other = raw_rate(inst, case, args.raw_seconds, workers)
        raws.append(rate)
        foreign.append(other)
        print(f"{case.name}: raw PKCS#11 with {workers} process(es), again: {rate:,.0f} sig/s", flush=True)
    verify = verify_rate(case, min(args.raw_seconds, 2.0))
    for row in rows:
        row.raw_runs, row.raw_foreign_cpu_pct = raws, foreign
        row.raw_sigs_per_s = sum(raws) / len(raws)
        row.ratio = row.http_sigs_per_s / row.raw_sigs_per_s
        row.verify_per_s = verify
        row.bound = ratio_bound(row.raw_sigs_per_s, verify, workers, len(os.sched_getaffinity(0)))
        row.http_bound = row.info_calls_per_s / row.raw_sigs_per_s
        row.verdict = "PASS" if row.ratio >= row.target else "MISS"
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=None, help="timed phase length (default 3, quick 1.5)")
    parser.add_argument("--quick", action="store_true",
                        help="shorter phases, one raw run per case instead of two (about a minute in all)")
    parser.add_argument("--out", type=Path, help="write the results as JSON to this file")
    parser.add_argument("--concurrency", type=int, default=16, help="client tasks for single-hash calls")
    parser.add_argument("--batch-concurrency", type=int, default=8, help="client tasks for 50-hash calls")
    parser.add_argument("--workers", default="1,2", help="server worker counts to run (default 1,2)")
    parser.add_argument("--keys", default="rsa-2048,ec-p256", help="key types to run (default both)")
    parser.add_argument("--sad-budget", type=float, default=None,
                        help="max seconds of credentials/authorize per phase; a pool that runs out ends the "
                             "phase early (default 15, quick 5)")
    parser.add_argument("--py-spy", type=Path, metavar="DIR",
                        help="record each server worker with py-spy (raw collapsed stacks) during timed phases")
    parser.add_argument("--keep", action="store_true", help="keep the instance directory")
    args = parser.parse_args()
    if args.seconds is None:
        args.seconds = 1.5 if args.quick else 3.0
    args.raw_seconds = args.seconds
    if args.sad_budget is None:
        args.sad_budget = 5.0 if args.quick else 15.0
    if args.py_spy:
        args.py_spy.mkdir(parents=True, exist_ok=True)
    workers_list = [int(w) for w in args.workers.split(",")]
    cases = [c for c in CASES if c.spec in args.keys.split(",")]

    started = time.time()
    load_before = os.getloadavg()
    tmp = Path(tempfile.mkdtemp(prefix="rssp-bench-signhash-"))
    rows: list[Row] = []
    try:
        print(f"setting up an instance in {tmp / 'instance'} ...", flush=True)
        inst = make_instance(tmp / "instance")
        for case in cases:
            for workers in workers_list:
                rows += run_case(inst, case, workers, args)
    finally:
        if args.keep:
            print(f"instance kept in {tmp / 'instance'}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    load_after = os.getloadavg()
    print_table(rows)
    print(f"\n{os.cpu_count()} CPUs, load average {load_before[0]:.2f} before, {load_after[0]:.2f} after; "
          f"{time.time() - started:.0f} s in all. Each ratio divides rates measured a few seconds apart on "
          "this machine: other load on it (column 'other') moves them.")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        report = {
            "benchmark": "signhash",
            "date": datetime.now(UTC).isoformat(timespec="seconds"),
            "host": {"cpus": os.cpu_count(), "python": platform.python_version(), "machine": platform.machine(),
                     "load_before": load_before, "load_after": load_after},
            "options": {"seconds": args.seconds, "quick": args.quick, "concurrency": args.concurrency,
                        "batch_concurrency": args.batch_concurrency, "sad_budget": args.sad_budget},
            "rows": [{k: None if isinstance(v, float) and math.isnan(v) else v for k, v in asdict(r).items()}
                     for r in rows],  # JSON has no NaN: a figure that does not apply is null
        }
        args.out.write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
        print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
