"""signatures/signDoc (PAdES) over HTTP against pyHanko signing the same PDF in-process with the same HSM key, same run.

What it does (see docs/benchmarks.md, "bench/signdoc.py"):

1. Makes a throw-away development instance with the operator CLI (``rssp init``: the local CA
   and the bundled test PKI, whose TSAs, OCSP responder and CRLs ``rssp serve`` runs in a
   process of its own), one user and one level-1 credential (``--key``, default ec-p256,
   ``--multisign 1000``), and starts ``rssp serve --workers W``.
2. For each level (``--levels``, default B-B and B-LTA) alternates timed rounds (``--seconds``
   each, ``--rounds`` of each path) after a warm-up of both:

   * pyhanko: ``PdfSigner`` with pyHanko's own ``PKCS11Signer`` on the instance's token and the
     credential's key (python-pkcs11, same SoftHSM2 token, same CKA_ID), the credential's
     certificate and chain from ``credentials/info``; at B-LTA pyHanko's ``HTTPTimeStamper`` on the
     same TSA and a validation context that fetches OCSP/CRLs from the same test PKI. One fetcher
     set is shared by every call, so revocation data is fetched once and then served from
     pyhanko-certvalidator's cache, as a long-running signing service would keep it; time-stamps
     cannot be cached (each covers a new signature). One call at a time (one core).
   * rssp: ``signatures/signDoc`` with the Base64 PDF (PAdES, Certification, the level asked),
     ``--concurrency`` client tasks on keep-alive connections, Bearer service token; the SADs
     (``numSignatures`` 1000 each) are made before the timed part (``credentials/authorize``
     costs an argon2 PIN check).

   Every output of the warm-up is checked with pyHanko (intact, trusted, timestamps as the level
   needs); an error during a round is counted, not timed as a success.
3. Prints per level and path: calls, rate, p50, p99, and the ratio rssp/pyhanko (target >= 0.8
   for B-B; B-LTA informational); ``--out FILE`` writes the same as JSON. The exit status is 0
   whatever the ratio: the machine is shared, compare ratios, not absolute rates.

Run: ``.venv/bin/python bench/signdoc.py [--levels B-B B-LTA] [--seconds S] [--rounds R]
[--concurrency C] [--workers W] [--key ec-p256|rsa-2048] [--out FILE]``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sqlite3
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from contextlib import aclosing
from dataclasses import dataclass, field
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests", REPO / "bench"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from asn1crypto import pem, x509  # noqa: E402
from deployment import Deployment  # noqa: E402 - the test suite's CLI-driven instance helper
from pyhanko.pdf_utils.incremental_writer import IncrementalPdfFileWriter  # noqa: E402
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign import fields, signers  # noqa: E402
from pyhanko.sign.timestamps import HTTPTimeStamper  # noqa: E402
from pyhanko.sign.validation import async_validate_pdf_signature  # noqa: E402
from pyhanko_certvalidator import ValidationContext  # noqa: E402
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend  # noqa: E402
from raw_pkcs11 import _login  # noqa: E402 - SoftHSM2 login with the retries two processes need
from validation_corpus import TEXT, simple_pdf  # noqa: E402
from validsign import SharedFetchers  # noqa: E402 - one cached fetcher set for every pyHanko call

from rssp.hsm import DEFAULT_MODULE  # noqa: E402

TARGETS = {"B-B": 0.8}
SIGN_ALGOS = {"ec-p256": "1.2.840.10045.4.3.2", "rsa-2048": "1.2.840.113549.1.1.11"}
USER, PASSWORD, PIN = "bench", "bench-password-1", "246810"
MULTISIGN = 1000


@dataclass
class Result:
    path: str
    level: str
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def row(self) -> dict[str, Any]:
        return {"path": self.path, "level": self.level, "calls": self.calls, "errors": self.errors,
                "rate_per_s": round(self.rate, 2), "p50_ms": round(self.pct(0.5), 1),
                "p99_ms": round(self.pct(0.99), 1)}


# --------------------------------------------------------------------------------------------
# The instance
# --------------------------------------------------------------------------------------------

@dataclass
class Instance:
    dep: Deployment
    cred_id: str
    key_id: str  # CKA_ID, hex
    tsa_url: str
    roots: list[x509.Certificate]

    @property
    def config(self) -> dict[str, Any]:
        return tomllib.loads((self.dep.directory / "rssp.toml").read_text())


def make_instance(directory: Path, key: str, workers: int) -> Instance:
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}  # this bench is SQLite
    dep = Deployment(directory, None, env)
    dep.rssp("init", str(directory))
    dep.add_user(USER, PASSWORD)
    cred = dep.add_credential("bench", USER, key, pin=PIN, multisign=MULTISIGN)
    with sqlite3.connect(directory / "rssp.db") as db:
        (key_id,) = db.execute("SELECT hsm_key_id FROM credentials WHERE id = ?", (cred.id,)).fetchone()
    config = tomllib.loads((directory / "rssp.toml").read_text())
    tsa = config["timestamps"]["tsa"]
    default = next(t for t in tsa.values() if t.get("default"))
    local_root = x509.Certificate.load(pem.unarmor(config["ca"]["local"]["certificate_pem"].encode())[2])
    dev_root = x509.Certificate.load(pem.unarmor((directory / "devpki" / "root.pem").read_bytes())[2])
    dep.start(workers=workers)
    return Instance(dep, cred.id, key_id, default["url"], [local_root, dev_root])


# --------------------------------------------------------------------------------------------
# The two paths
# --------------------------------------------------------------------------------------------

class PyHanko:
    """pyHanko in this process with its PKCS#11 signer on the instance's token and key."""

    def __init__(self, inst: Instance, chain: list[x509.Certificate]) -> None:
        from pyhanko.sign.pkcs11 import PKCS11Signer

        os.environ["SOFTHSM2_CONF"] = str(inst.dep.directory / "softhsm2.conf")
        import pkcs11

        hsm_pin = (inst.dep.directory / "hsm-pin").read_text().strip()
        self.session = _login(pkcs11.lib(DEFAULT_MODULE), inst.config["hsm"]["token_label"], hsm_pin)
        self.signer = PKCS11Signer(self.session, key_id=bytes.fromhex(inst.key_id), signing_cert=chain[0],
                                   ca_chain=chain[1:], other_certs_to_pull=(), use_raw_mechanism=True)
        self.tsa_url = inst.tsa_url
        self.roots = inst.roots
        self.fetchers = SharedFetchers()  # "pyhanko": revocation data fetched once, then cached
        self.fresh = AIOHttpFetcherBackend()  # "pyhanko-fresh": fetched for every signature, as rssp does
        self.stamper: HTTPTimeStamper | None = None  # one, with one keep-alive session, for every call
        self.tsa_session: aiohttp.ClientSession | None = None  # the stamper's; ours to close

    async def sign(self, pdf: bytes, level: str, cached: bool = True) -> bytes:
        long_term = level in ("B-LT", "B-LTA")
        meta = signers.PdfSignatureMetadata(
            field_name="Signature1", md_algorithm="sha256", subfilter=fields.SigSeedSubFilter.PADES, certify=True,
            docmdp_permissions=fields.MDPPerm.FILL_FORMS, embed_validation_info=long_term,
            use_pades_lta=level == "B-LTA", validation_context=self._context(cached) if long_term else None)
        if self.stamper is None:
            self.tsa_session = aiohttp.ClientSession()
            self.stamper = HTTPTimeStamper(self.tsa_url, session=self.tsa_session)
        stamper = self.stamper if level != "B-B" else None
        out = BytesIO()
        await signers.PdfSigner(meta, self.signer, timestamper=stamper).async_sign_pdf(
            IncrementalPdfFileWriter(BytesIO(pdf)), output=out)
        return out.getvalue()

    def _context(self, cached: bool) -> ValidationContext:
        return ValidationContext(trust_roots=self.roots, allow_fetching=True, revocation_mode="hard-fail",
                                 fetcher_backend=self.fetchers if cached else self.fresh)

    async def close(self) -> None:
        await self.fetchers.backend.close()
        await self.fresh.close()
        if self.tsa_session is not None:
            await self.tsa_session.close()  # ours: pyHanko leaves a caller's session open
        self.session.close()


class Rssp:
    """signatures/signDoc over keep-alive connections, with SADs made before the timed part."""

    def __init__(self, inst: Instance, session: aiohttp.ClientSession, token: str, sign_algo: str) -> None:
        self.inst, self.session, self.sign_algo = inst, session, sign_algo
        self.headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
        self.sads: list[list[Any]] = []  # [SAD, signatures left]

    async def call(self, method: str, body: dict[str, Any]) -> tuple[int, Any]:
        async with self.session.post(f"{self.inst.dep.base}/csc/v2/{method}", data=json.dumps(body),
                                     headers=self.headers) as resp:
            return resp.status, await resp.json()

    async def provision(self, signatures: int) -> None:
        """Enough SAD signatures for ``signatures`` more calls (authorize is outside the timed part)."""
        while sum(left for _sad, left in self.sads) < signatures:
            status, body = await self.call("credentials/authorize", {
                "credentialID": self.inst.cred_id, "numSignatures": MULTISIGN,
                "authData": [{"id": "PIN", "value": PIN}]})
            assert status == 200, body
            self.sads.append([body["SAD"], MULTISIGN])

    def _sad(self) -> str:
        while self.sads and self.sads[0][1] <= 0:
            self.sads.pop(0)
        self.sads[0][1] -= 1
        return self.sads[0][0]

    async def sign(self, pdf: bytes, level: str) -> bytes | None:
        body = {"credentialID": self.inst.cred_id, "SAD": self._sad(), "documents": [{
            "document": base64.b64encode(pdf).decode(), "signature_format": "P", "conformance_level": f"Ades-{level}",
            "signed_envelope_property": "Certification", "signAlgo": self.sign_algo}]}
        status, answer = await self.call("signatures/signDoc", body)
        return base64.b64decode(answer["DocumentWithSignature"][0]) if status == 200 else None


async def check(signed: bytes | None, level: str, roots: list[x509.Certificate]) -> None:
    """The warm-up's outputs are what the level promises (pyHanko's classic validation)."""
    assert signed is not None, "signDoc failed during the warm-up"
    reader = PdfFileReader(BytesIO(signed))
    context = ValidationContext(trust_roots=roots, allow_fetching=True)
    async with aclosing(context):
        status = await async_validate_pdf_signature(reader.embedded_regular_signatures[-1], context)
    assert status.bottom_line, status.summary()
    assert (status.timestamp_validity is not None) == (level != "B-B")
    assert bool(reader.embedded_timestamp_signatures) == (level == "B-LTA")


# --------------------------------------------------------------------------------------------
# Rounds
# --------------------------------------------------------------------------------------------

async def run_round(result: Result, call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float) -> None:
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            ok = await call()
            if ok:
                result.calls += 1
                result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            else:
                result.errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds += time.perf_counter() - start


async def measure(args: argparse.Namespace, inst: Instance) -> list[Result]:
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        auth = {"Authorization": aiohttp.encode_basic_auth(USER, PASSWORD)}
        async with session.post(f"{inst.dep.base}/csc/v2/auth/login", json={}, headers=auth) as resp:
            token = (await resp.json())["access_token"]
        rssp = Rssp(inst, session, token, SIGN_ALGOS[args.key])
        status, info = await rssp.call("credentials/info", {"credentialID": inst.cred_id, "certificates": "chain"})
        assert status == 200, info
        chain = [x509.Certificate.load(base64.b64decode(c)) for c in info["cert"]["certificates"]]
        reference = PyHanko(inst, chain)
        try:
            return [r for level in args.levels for r in await _level(args, level, reference, rssp, inst)]
        finally:
            await reference.close()


async def _level(args: argparse.Namespace, level: str, reference: PyHanko, rssp: Rssp, inst: Instance
                 ) -> list[Result]:
    pdf = simple_pdf(TEXT)

    async def rssp_call() -> bool:
        return await rssp.sign(pdf, level) is not None

    async def pyhanko_call() -> bool:
        await reference.sign(pdf, level)
        return True

    async def pyhanko_fresh_call() -> bool:
        await reference.sign(pdf, level, cached=False)
        return True

    paths: dict[str, tuple[Callable[[], Awaitable[bool]], int]] = {"pyhanko": (pyhanko_call, 1)}
    if level in ("B-LT", "B-LTA"):
        paths["pyhanko-fresh"] = (pyhanko_fresh_call, 1)
    paths["rssp"] = (rssp_call, args.concurrency)

    await rssp.provision(8 * args.workers + 2)
    for _ in range(2):  # warm-up: connections, caches (revocation data on the pyHanko path), every worker
        await check(await reference.sign(pdf, level), level, inst.roots)
        await asyncio.gather(*(rssp_call() for _ in range(4 * args.workers)))
    await check(await rssp.sign(pdf, level), level, inst.roots)
    results = {path: Result(path, level) for path in paths}
    for _ in range(args.rounds):
        for path, (call, concurrency) in paths.items():
            if path == "rssp":  # SADs for up to 4x pyHanko's rate, made outside the timed part
                await rssp.provision(int(results["pyhanko"].rate * args.seconds * 4 + 50))
            await run_round(results[path], call, concurrency, args.seconds)
    return list(results.values())


def report(args: argparse.Namespace, results: list[Result]) -> dict[str, Any]:
    levels = {}
    for level in args.levels:
        by_path = {r.path: r for r in results if r.level == level}
        ratios = {path: round(by_path["rssp"].rate / r.rate, 3) if r.rate else float("nan")
                  for path, r in by_path.items() if path != "rssp"}
        target = TARGETS.get(level)
        levels[level] = {"ratio_rssp_over_pyhanko": ratios["pyhanko"], "target": target,
                         "verdict": ("PASS" if ratios["pyhanko"] >= target else "MISS") if target else "informational"}
        if "pyhanko-fresh" in ratios:
            levels[level]["ratio_rssp_over_pyhanko_fresh"] = ratios["pyhanko-fresh"]
    return {"benchmark": "signatures/signDoc (PAdES) vs pyHanko + PKCS#11 in-process", "key": args.key,
            "workers": args.workers, "concurrency": args.concurrency, "seconds_per_round": args.seconds,
            "rounds": args.rounds, "cpus": os.cpu_count(), "python": platform.python_version(),
            "results": [r.row() for r in results], "levels": levels}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--levels", nargs="+", default=["B-B", "B-LTA"], choices=["B-B", "B-T", "B-LT", "B-LTA"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=2)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--key", default="ec-p256", choices=sorted(SIGN_ALGOS))
    parser.add_argument("--out")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rssp-bench-signdoc-") as tmp:
        inst = make_instance(Path(tmp) / "instance", args.key, args.workers)
        try:
            results = asyncio.run(measure(args, inst))
        finally:
            inst.dep.stop()
    out = report(args, results)
    print(f"{'level':<6} {'path':<14} {'calls':>6} {'errors':>6} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8}")
    for r in results:
        row = r.row()
        print(f"{r.level:<6} {r.path:<14} {row['calls']:>6} {row['errors']:>6} {row['rate_per_s']:>8} "
              f"{row['p50_ms']:>8} {row['p99_ms']:>8}")
    for level, verdict in out["levels"].items():
        fresh = verdict.get("ratio_rssp_over_pyhanko_fresh")
        print(f"{level}: ratio rssp/pyhanko = {verdict['ratio_rssp_over_pyhanko']:.3f} "
              f"(target {verdict['target']}: {verdict['verdict']})"
              + (f"; rssp/pyhanko-fresh = {fresh:.3f}" if fresh is not None else ""))
    print(f"key {args.key}, workers {args.workers}, concurrency {args.concurrency}")
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
