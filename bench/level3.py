"""signHash on level-3 credentials against level-1 credentials of the same key type, in one run.

What the ratio shows (docs/benchmarks.md, docs/level3.md): the cost of the SAM's level-3 work
per call — the SAD row's HSM MAC verified and rewritten (one HSM hop, an optimistic
conditional update), the signer's KEK unsealed with the SAD, the private key unwrapped into a
session object for the call and destroyed — over what level 1 does for the same request.

1. A throw-away instance made with ``rssp init --production`` and ``rssp user add``; per key
   type one level-1 credential (``rssp credential create --level 1``) and ``--level3-creds``
   level-3 credentials (PIN AND TOTP; several, because each TOTP step authorizes once and the
   bench needs a pool of SADs now, not over minutes). All with ``--multisign 1000``.
2. ``rssp serve --workers N`` (default 2).
3. Per key (RSA-2048, EC P-256) and per n (1 and 50 hashes per call), ``--rounds`` pairs of
   phases, level 1 then level 3 (alternating, so that a machine whose load drifts hits both;
   the row takes the median of each level): ``signatures/signHash`` from concurrent tasks for
   ``--seconds``. The SADs come from ``credentials/authorize`` outside the timed part (argon2:
   64 MiB at level 1, 128 MiB at level 3), ``--sads`` at a time, each bound to
   ``--sad-hashes`` fresh digests, the same shape at both levels; a pool lasts over phases and
   is refilled when it runs low. Calls interleave over the SADs, as independent signers would.
4. Prints one row per (key, n): level-1 and level-3 signatures/s, their ratio, the target
   (>= 0.7 for 50 hashes per call). ``--out FILE`` writes JSON with every phase.

Run: ``.venv/bin/python bench/level3.py [--seconds S] [--quick] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, UTC
from pathlib import Path

BENCH = Path(__file__).resolve().parent
if str(BENCH) not in sys.path:
    sys.path.insert(0, str(BENCH))

import signhash  # noqa: E402  (bench/signhash.py: instance CLI, server, raw HTTP client)
from signhash import Client, Server, b64, login, percentile, rssp  # noqa: E402

KEYS = {"rsa-2048": "1.2.840.113549.1.1.11", "ec-p256": "1.2.840.10045.4.3.2"}
PIN1, PIN3 = "246810", "Bench-level3-pin-1"
MULTISIGN = 1000
TARGET_BATCH = 0.7


@dataclass
class Cred:
    id: str
    level: int
    seed: str | None = None
    last_step: int = -10**9  # the last TOTP step used (each is accepted once)


@dataclass
class Setup:
    directory: Path
    creds: dict[tuple[str, int], list[Cred]] = field(default_factory=dict)  # (key, level) -> credentials


def make_setup(directory: Path, level3_creds: int) -> Setup:
    os.environ["RSSP_OPERATOR_FILE"] = str(directory / "operator.json")  # init writes it; privileged commands use it
    rssp("init", str(directory), "--production")
    rssp("user", "add", str(directory), signhash.USER, "--password", signhash.PASSWORD)
    setup = Setup(directory)
    for key in KEYS:
        setup.creds[(key, 1)] = [_create(directory, key, 1)]
        setup.creds[(key, 3)] = [_create(directory, key, 3) for _ in range(level3_creds)]
    return setup


def _create(directory: Path, key: str, level: int) -> Cred:
    args = ["credential", "create", str(directory), "--user", signhash.USER, "--key", key, "--level", str(level),
            "--multisign", str(MULTISIGN), "--json"]
    args += ["--pin", PIN3, "--totp"] if level == 3 else ["--pin", PIN1]
    out = json.loads(rssp(*args))
    seed = None
    if "otpauthURI" in out:
        from urllib.parse import parse_qs, urlparse

        seed = parse_qs(urlparse(out["otpauthURI"]).query)["secret"][0]
    return Cred(out["credentialID"], level, seed)


def _otp(cred: Cred) -> str | None:
    """The next unused TOTP step the server still accepts (now-1 .. now+1), or None for now."""
    import pyotp

    assert cred.seed
    now = time.time()
    now_step = int(now // 30)
    for step in range(max(now_step - 1, cred.last_step + 1), now_step + 2):
        if (step + 2) * 30 - now > 3:  # still accepted for a while (the server's window is one step)
            cred.last_step = step
            return pyotp.TOTP(cred.seed).at(step * 30)
    return None


async def authorize_pool(base: str, token: str, creds: list[Cred], sads: int,
                         hashes: int) -> list[tuple[str, str, list[bytes]]]:
    """Up to ``sads`` SADs (credential ID, SAD, bound digests), round robin over ``creds``.

    Level 3 is limited by its TOTP steps (each accepted once, a window of one step either
    side): each credential gives about three now; when all are used, this waits for the next step.
    """
    import aiohttp

    headers = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    out: list[tuple[str, str, list[bytes]]] = []

    async def one(session: aiohttp.ClientSession, cred: Cred) -> None:
        auth = [{"id": "PIN", "value": PIN3 if cred.level == 3 else PIN1}]
        if cred.level == 3:
            code = _otp(cred)  # at the last moment: a code is valid for one step either side only
            if code is None:
                return
            auth.append({"id": "OTP", "value": code})
        digests = [os.urandom(32) for _ in range(hashes)]
        body = {"credentialID": cred.id, "numSignatures": hashes, "hashes": [b64(d) for d in digests],
                "hashAlgorithmOID": signhash.SHA256_OID, "authData": auth}
        async with session.post(f"{base}/csc/v2/credentials/authorize", json=body, headers=headers) as resp:
            data = await resp.json(content_type=None)
            if resp.status != 200:
                raise RuntimeError(f"credentials/authorize: {resp.status} {data}")
        out.append((cred.id, data["SAD"], digests))

    deadline = time.monotonic() + 45
    turn = 0
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=4)) as session:
        while len(out) < sads and time.monotonic() < deadline:
            before = len(out)
            batch = [creds[(turn + i) % len(creds)] for i in range(min(4, sads - len(out)))]
            turn += len(batch)
            await asyncio.gather(*(one(session, c) for c in batch))
            if len(out) == before:
                await asyncio.sleep(1)
    return out


def bodies(sign_algo: str, pool: list[tuple[str, str, list[bytes]]], n: int) -> list[bytes]:
    """signHash bodies, ``n`` hashes each, interleaved over the SADs (call i of each before i+1)."""
    out = []
    per_sad = len(pool[0][2]) // n
    for i in range(per_sad):
        for cred_id, sad, digests in pool:
            chunk = digests[i * n:(i + 1) * n]
            out.append(json.dumps({"credentialID": cred_id, "SAD": sad, "hashes": [b64(d) for d in chunk],
                                   "hashAlgorithmOID": signhash.SHA256_OID, "signAlgo": sign_algo},
                                  separators=(",", ":")).encode())
    return out


@dataclass
class Phase:
    level: int
    sigs_per_s: float
    calls: int
    errors: int
    p50_ms: float
    sads: int
    seconds: float


@dataclass
class Row:
    key: str
    hashes_per_call: int
    level1: float
    level3: float
    ratio: float
    target: float | None
    verdict: str
    phases: list[Phase]


class Supply:
    """The signHash bodies still unsent, per (key, level, n): a SAD pool lasts over several phases
    (a level-3 SAD needs a TOTP step, and the steps are few), and is refilled when it runs low."""

    def __init__(self) -> None:
        self.left: dict[tuple[str, int, int], list[bytes]] = {}
        self.sads: dict[tuple[str, int, int], int] = {}

    async def take(self, server: Server, token: str, setup: Setup, key: str, level: int, n: int,
                   args: argparse.Namespace, need: int, concurrency: int) -> list[bytes]:
        slot = (key, level, n)
        if len(self.left.get(slot, [])) < max(need, 1):
            pool = await authorize_pool(server.base, token, setup.creds[(key, level)], args.sads, args.sad_hashes)
            if len(pool) < concurrency:
                raise RuntimeError(f"only {len(pool)} SADs for {concurrency} tasks: add --level3-creds")
            self.left[slot], self.sads[slot] = bodies(KEYS[key], pool, n), len(pool)
        return self.left[slot]

    def used(self, key: str, level: int, n: int, count: int) -> None:
        self.left[(key, level, n)] = self.left[(key, level, n)][count:]


async def phase(server: Server, token: str, setup: Setup, supply: Supply, key: str, level: int, n: int,
                args: argparse.Namespace, concurrency: int, expected: float) -> Phase:
    # calls this phase may send (from the last rate seen), at most half a fresh pool
    need = min(int(expected * args.seconds * 1.5 / n), args.sads * args.sad_hashes // n // 2)
    todo = await supply.take(server, token, setup, key, level, n, args, need, concurrency)
    client = Client(server, token)
    await client.open(concurrency)
    try:
        result = await client.run("/csc/v2/signatures/signHash", todo, args.seconds)
    finally:
        await client.close()
    supply.used(key, level, n, result["ok"] + len(result["errors"]))
    elapsed = max(result["elapsed"], 1e-9)
    errors = [e for e in result["errors"] if e]
    if errors:
        print(f"  level {level} {key} n={n}: {len(result['errors'])} errors, e.g. {errors[:2]}", file=sys.stderr)
    return Phase(level, result["ok"] * n / elapsed, result["ok"], len(result["errors"]),
                 percentile(result["latencies"], 0.5) * 1000, supply.sads[(key, level, n)], elapsed)


def _median(values: list[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


async def run(args: argparse.Namespace, setup: Setup) -> list[Row]:
    server = Server(signhash.Instance(setup.directory), args.workers)
    server.start()
    rows: list[Row] = []
    supply = Supply()
    try:
        token = await login(server.base)
        for key in args.keys:
            for n in args.hashes:
                concurrency = args.concurrency if n == 1 else args.batch_concurrency
                phases: list[Phase] = []
                rate = {1: 2000.0 * n, 3: 2000.0 * n}  # signatures/s, until measured
                for _round in range(args.rounds):  # alternate, so that a drifting machine hits both levels
                    for level in (1, 3):
                        done = await phase(server, token, setup, supply, key, level, n, args, concurrency,
                                           rate[level])
                        rate[level] = done.sigs_per_s
                        phases.append(done)
                l1 = _median([p.sigs_per_s for p in phases if p.level == 1])
                l3 = _median([p.sigs_per_s for p in phases if p.level == 3])
                target = TARGET_BATCH if n == 50 else None
                ratio = l3 / l1 if l1 else float("nan")
                verdict = "" if target is None else ("PASS" if ratio >= target else "MISS")
                rows.append(Row(key, n, l1, l3, ratio, target, verdict, phases))
                print(f"{key:9} n={n:<3} level1 {l1:8.0f} sig/s  level3 {l3:8.0f} sig/s  ratio {ratio:5.2f} "
                      f"{'(target ' + format(target, '.1f') + ') ' + verdict if target else ''}", flush=True)
    finally:
        server.stop()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--quick", action="store_true", help="one round, 1.5 s phases")
    parser.add_argument("--rounds", type=int, default=3, help="level-1/level-3 phase pairs per row (medians)")
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--keys", default="rsa-2048,ec-p256")
    parser.add_argument("--hashes", default="1,50", help="hashes per call, comma-separated")
    parser.add_argument("--concurrency", type=int, default=16, help="client tasks for single-hash calls")
    parser.add_argument("--batch-concurrency", type=int, default=8, help="client tasks for 50-hash calls")
    parser.add_argument("--level3-creds", type=int, default=14, help="level-3 credentials per key type")
    parser.add_argument("--sads", type=int, default=20, help="SADs per phase")
    parser.add_argument("--sad-hashes", type=int, default=1000, help="hashes bound to each SAD")
    parser.add_argument("--out", help="write the rows as JSON")
    parser.add_argument("--keep", action="store_true", help="keep the instance directory")
    args = parser.parse_args()
    if args.quick:
        args.seconds, args.rounds = min(args.seconds, 1.5), 1
    args.keys = args.keys.split(",")
    args.hashes = [int(v) for v in args.hashes.split(",")]
    base = Path(tempfile.mkdtemp(prefix="rssp-bench-level3-"))
    try:
        setup = make_setup(base / "instance", args.level3_creds)
        rows = asyncio.run(run(args, setup))
    finally:
        if not args.keep:
            shutil.rmtree(base, ignore_errors=True)
    if args.out:
        Path(args.out).write_text(json.dumps({
            "when": datetime.now(UTC).isoformat(), "machine": platform.platform(), "cpus": os.cpu_count(),
            "load": os.getloadavg(), "options": {k: v for k, v in vars(args).items() if k != "out"},
            "rows": [asdict(r) for r in rows]}, indent=2))


if __name__ == "__main__":
    main()
