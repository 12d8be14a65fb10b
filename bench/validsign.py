"""validates/validSign over HTTP against pyHanko validating the same document in-process, same run.

What it does (see docs/validation.md, "Benchmark"):

1. Makes the validation corpus PKI of the test suite (tests/validation_corpus.py:
   certomancer; OCSP, CRLs served by its animator on a loopback port) and signs one document
   (``--doc``, default ``pades-B-LTA``; ``pades-B-T``, ``pades-B-B``, ``cades-attached-B-T``).
2. Makes a throw-away instance with the operator CLI (``rssp init --production``, ``user
   add``), trusts the corpus root in ``[validation]``, starts ``rssp serve --workers W``.
3. Alternates timed rounds (``--seconds`` each, ``--rounds`` of each path):

   * pyhanko: the same EN 319 102-1 process rssp runs for that document (``ades_lta_validation``
     with document timestamps, ``ades_with_time_validation`` with a signature timestamp,
     ``ades_basic_validation`` otherwise), called directly in this process, one after the
     other (one core), with one fetcher set shared by every call so revocation data is
     fetched once and then served from pyhanko-certvalidator's own cache;
   * rssp: ``validates/validSign`` with the Base64 document, ``--concurrency`` client tasks
     on keep-alive connections, Bearer service token; rssp's revocation cache (per server
     process) serves the revocation data after the warm-up.

   Both paths are warmed up first; the animator counts every OCSP/CRL request during the
   timed rounds (it should be 0 on both paths: fetched once, then cached).
4. Prints per path: calls, rate, p50, p99, and the ratio rssp/pyhanko (target >= 0.8);
   ``--out FILE`` writes the same as JSON.

Run: ``.venv/bin/python bench/validsign.py [--doc NAME] [--seconds S] [--rounds R]
[--concurrency C] [--workers W] [--out FILE]``. The machine is shared by whatever else runs:
compare the ratio, not the absolute rates.

``--corpus``: the real-world corpus instead (tests/realworld_corpus.py; its files must be
present), every document validated offline, one at a time, by both paths in the same run —
pyHanko alone in-process (its classic API, tests/realworld_pyhanko.py, as the corpus test
compares it) and ``validSign`` over HTTP on an instance trusting the corpus anchors with
``max_fetches = 0`` — ``--rounds`` passes over the corpus, the two paths taking turns per
document. It prints per path the documents per second, p50/p99 and the slowest document,
and the ratio rssp/pyHanko.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import json
import os
import platform
import sys
import tempfile
import time
import tomllib
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from io import BytesIO
from pathlib import Path
from typing import Any

import aiohttp
import tomli_w

REPO = Path(__file__).resolve().parent.parent
for extra in (REPO, REPO / "tests"):
    if str(extra) not in sys.path:
        sys.path.insert(0, str(extra))

from asn1crypto import cms  # noqa: E402
from deployment import Deployment  # noqa: E402 - the test suite's CLI-driven instance helper
from pyhanko.pdf_utils.reader import PdfFileReader  # noqa: E402
from pyhanko.sign.validation.ades import (  # noqa: E402
    AdESBasicValidationResult,
    ades_basic_validation,
    ades_lta_validation,
    ades_with_time_validation,
)
from pyhanko.sign.validation.policy_decl import (  # noqa: E402
    PdfSignatureValidationSpec,
    RevocationInfoGatheringSpec,
    SignatureValidationSpec,
)
from pyhanko_certvalidator.context import CertValidationPolicySpec  # noqa: E402
from pyhanko_certvalidator.fetchers.aiohttp_fetchers import AIOHttpFetcherBackend  # noqa: E402
from pyhanko_certvalidator.fetchers.api import FetcherBackend, Fetchers  # noqa: E402
from pyhanko_certvalidator.policy_decl import (  # noqa: E402
    CertRevTrustPolicy,
    RevocationCheckingPolicy,
    RevocationCheckingRule,
)
from pyhanko_certvalidator.registry import SimpleTrustManager  # noqa: E402
from tsa_helpers import ServerThread  # noqa: E402
from validation_corpus import ValidationPki, build_corpus, counting_animator, validation_instance  # noqa: E402

from rssp.devpki import free_port  # noqa: E402

TARGET = 0.8


@dataclass
class Result:
    path: str
    calls: int = 0
    errors: int = 0
    seconds: float = 0.0
    revocation_requests: int = 0
    latencies_ms: list[float] = field(default_factory=list)

    @property
    def rate(self) -> float:
        return self.calls / self.seconds if self.seconds else 0.0

    def pct(self, q: float) -> float:
        ordered = sorted(self.latencies_ms)
        return ordered[min(len(ordered) - 1, int(q * len(ordered)))] if ordered else float("nan")

    def row(self) -> dict[str, Any]:
        return {"path": self.path, "calls": self.calls, "errors": self.errors, "rate_per_s": round(self.rate, 1),
                "p50_ms": round(self.pct(0.5), 2), "p99_ms": round(self.pct(0.99), 2),
                "revocation_requests_during_rounds": self.revocation_requests}


class SharedFetchers(FetcherBackend):
    """One pyhanko-certvalidator fetcher set for every call: its caches make 'fetched once'."""

    def __init__(self) -> None:
        self.backend = AIOHttpFetcherBackend()
        self.fetchers = self.backend.get_fetchers()

    def get_fetchers(self) -> Fetchers:
        return self.fetchers

    async def close(self) -> None:
        return None


def pyhanko_spec(root: Any, backend: FetcherBackend) -> SignatureValidationSpec:
    rule = RevocationCheckingRule.CHECK_IF_DECLARED
    policy = CertValidationPolicySpec(trust_manager=SimpleTrustManager.build(trust_roots=[root]),
                                      revinfo_policy=CertRevTrustPolicy(RevocationCheckingPolicy(rule, rule)))
    return SignatureValidationSpec(cert_validation_policy=policy, ts_cert_validation_policy=policy,
                                   revinfo_gathering_policy=RevocationInfoGatheringSpec(fetcher_backend=backend))


async def pyhanko_validate(doc: bytes, spec: SignatureValidationSpec) -> bool:
    """pyHanko's own AdES process for this document (what a pyHanko user would call)."""
    result: AdESBasicValidationResult[Any]  # the LTA, with-time and basic processes' common base
    if doc[:1] == b"\x30":
        signed = cms.ContentInfo.load(doc)["content"]
        result = await ades_with_time_validation(signed, spec)
        return result.ades_subindic.status.name == "PASSED"
    reader = PdfFileReader(BytesIO(doc))
    ok = True
    doc_ts = list(reader.embedded_timestamp_signatures)
    for sig in reader.embedded_regular_signatures:
        if any(ts.signed_revision > sig.signed_revision for ts in doc_ts):
            result = await ades_lta_validation(sig, PdfSignatureValidationSpec(spec))
        else:
            unsigned = sig.signer_info["unsigned_attrs"]
            timed = bool(unsigned) and any(a["type"].native == "signature_time_stamp_token" for a in unsigned)
            process = ades_with_time_validation if timed else ades_basic_validation
            result = await process(sig.signed_data, spec, raw_digest=sig.compute_digest())
        ok = ok and result.ades_subindic.status.name == "PASSED"
    return ok


async def run_round(result: Result, call: Callable[[], Awaitable[bool]], concurrency: int, seconds: float,
                    hits: dict[str, int]) -> None:
    before = sum(v for k, v in hits.items() if k in ("ocsp", "crls"))
    deadline = time.perf_counter() + seconds
    start = time.perf_counter()

    async def worker() -> None:
        while time.perf_counter() < deadline:
            t0 = time.perf_counter()
            ok = await call()
            result.latencies_ms.append((time.perf_counter() - t0) * 1e3)
            if ok:
                result.calls += 1
            else:
                result.errors += 1

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    result.seconds += time.perf_counter() - start
    result.revocation_requests += sum(v for k, v in hits.items() if k in ("ocsp", "crls")) - before


def make_instance(directory: Path, pki: ValidationPki, workers: int) -> Deployment:
    """The test suite's validation instance (user ``bench``), with room for the benchmark's documents."""
    validation = {"max_document_bytes": 2 * 1024 * 1024, "fetch_allow": [f"{pki.prefix}/"]}
    return validation_instance(directory, pki, validation, ("bench",), workers=workers,
                               server={"max_body_bytes": 4 * 1024 * 1024})


async def measure(args: argparse.Namespace, dep: Deployment, doc: bytes, root: Any, hits: dict[str, int]
                  ) -> dict[str, Result]:
    backend = SharedFetchers()
    try:
        return await _measure(args, dep, doc, pyhanko_spec(root, backend), hits)
    finally:  # pyHanko's fetchers' aiohttp session, also when a warm-up assertion fails
        await backend.backend.close()


async def _measure(args: argparse.Namespace, dep: Deployment, doc: bytes, spec: SignatureValidationSpec,
                   hits: dict[str, int]) -> dict[str, Result]:
    body = json.dumps({"document": base64.b64encode(doc).decode(), "returnReport": "none"}).encode()
    connector = aiohttp.TCPConnector(limit=args.concurrency)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        auth = {"Authorization": aiohttp.encode_basic_auth("bench", "bench-password")}
        async with session.post(f"{dep.base}/csc/v2/auth/login", json={}, headers=auth) as resp:
            token = (await resp.json())["access_token"]
        headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}

        async def rssp_call() -> bool:
            async with session.post(f"{dep.base}/csc/v2/validates/validSign", data=body, headers=headers) as resp:
                return resp.status == 200 and (await resp.json())["indication"] == "TOTAL_PASSED"

        async def pyhanko_call() -> bool:
            return await pyhanko_validate(doc, spec)

        for _ in range(3):  # warm-up: revocation data fetched and cached on both paths, every worker
            assert await pyhanko_call(), "pyHanko does not pass the document"
        await asyncio.gather(*(rssp_call() for _ in range(4 * args.workers)))
        assert await rssp_call(), "rssp does not pass the document"
        results = {"pyhanko": Result("pyhanko"), "rssp": Result("rssp")}
        for _ in range(args.rounds):
            await run_round(results["pyhanko"], pyhanko_call, 1, args.seconds, hits)
            await run_round(results["rssp"], rssp_call, args.concurrency, args.seconds, hits)
    return results


def corpus_instance(directory: Path, anchors: list[Path], workers: int) -> Deployment:
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    dep = Deployment(directory, None, env)
    dep.rssp("init", str(directory), "--production")
    dep.add_user("bench", "bench-password")
    path = directory / "rssp.toml"
    raw = tomllib.loads(path.read_text())
    raw["server"]["max_body_bytes"] = 16 * 1024 * 1024
    raw["validation"] = {**raw.get("validation", {}), "trust_anchors": [str(a) for a in anchors], "max_fetches": 0}
    path.write_text(tomli_w.dumps(raw))
    dep.start(workers=workers)
    return dep


@dataclass
class Timed:
    """One path over the corpus: per-document latencies (ms) and the slowest document."""

    path: str
    ms: dict[str, list[float]] = field(default_factory=dict)
    errors: int = 0

    def add(self, doc: str, seconds: float) -> None:
        self.ms.setdefault(doc, []).append(seconds * 1e3)

    def row(self) -> dict[str, Any]:
        every = sorted(v for values in self.ms.values() for v in values)
        slowest = max(self.ms, key=lambda d: max(self.ms[d]))
        pct = lambda q: round(every[min(len(every) - 1, int(q * len(every)))], 1)  # noqa: E731
        return {"path": self.path, "validations": len(every), "errors": self.errors,
                "per_s": round(len(every) / (sum(every) / 1e3), 1), "p50_ms": pct(0.5), "p99_ms": pct(0.99),
                "slowest": slowest, "slowest_ms": round(max(self.ms[slowest]), 1)}


async def measure_corpus(dep: Deployment, folder: Path, rounds: int) -> dict[str, Timed]:
    import realworld_pyhanko
    from realworld_corpus import manifest

    from asn1crypto import pem, x509

    def cert(path: Path) -> x509.Certificate:
        data = path.read_bytes()
        return x509.Certificate.load(pem.unarmor(data)[2] if pem.detect(data) else data)

    docs = manifest()["documents"]
    out = {"pyhanko": Timed("pyhanko"), "rssp": Timed("rssp")}
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=300)) as session:
        auth = {"Authorization": aiohttp.encode_basic_auth("bench", "bench-password")}
        async with session.post(f"{dep.base}/csc/v2/auth/login", json={}, headers=auth) as resp:
            headers = {"Authorization": f"Bearer {(await resp.json())['access_token']}"}
        for _ in range(rounds):
            for entry in docs:
                data = (folder / entry["file"]).read_bytes()
                detached = (folder / entry["detached_content"]).read_bytes() if "detached_content" in entry else None
                body = {"validationTime": entry["validation_time"], "returnReport": "none"}
                body |= ({"signature": base64.b64encode(data).decode(), "document": base64.b64encode(detached).decode()}
                         if detached is not None else {"document": base64.b64encode(data).decode()})
                moment = datetime.strptime(entry["validation_time"], "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)
                t0 = time.perf_counter()
                verdict = await realworld_pyhanko.document(entry, data, detached,
                                                           [cert(folder / a) for a in entry["anchors"]], moment)
                out["pyhanko"].add(entry["id"], time.perf_counter() - t0)
                out["pyhanko"].errors += verdict.indication == "ERROR"
                t0 = time.perf_counter()
                async with session.post(f"{dep.base}/csc/v2/validates/validSign", json=body, headers=headers) as resp:
                    await resp.read()
                    out["rssp"].add(entry["id"], time.perf_counter() - t0)
                    out["rssp"].errors += resp.status != 200
    return out


def run_corpus(args: argparse.Namespace) -> None:
    import logging

    from realworld_corpus import data_dir, manifest

    logging.getLogger("pyhanko").setLevel(logging.CRITICAL)  # pyHanko logs each odd real file with a traceback
    folder = data_dir()
    if folder is None:
        raise SystemExit("the real-world corpus files are not here (see tests/realworld_corpus.py)")
    data = manifest()
    anchors = sorted({folder / a for e in data["documents"] for a in e["anchors"]})
    with tempfile.TemporaryDirectory(prefix="rssp-bench-validsign-corpus-") as tmp:
        dep = corpus_instance(Path(tmp) / "instance", anchors, args.workers)
        try:
            results = asyncio.run(measure_corpus(dep, folder, args.rounds))
        finally:
            dep.stop()
    rows = {name: r.row() for name, r in results.items()}
    ratio = rows["rssp"]["per_s"] / rows["pyhanko"]["per_s"]
    report = {"benchmark": "validates/validSign vs pyHanko in-process, real-world corpus",
              "documents": len(data["documents"]), "rounds": args.rounds, "workers": args.workers,
              "cpus": os.cpu_count(), "python": platform.python_version(), "results": list(rows.values()),
              "ratio_rssp_over_pyhanko": round(ratio, 3)}
    print(f"{'path':<8} {'validations':>11} {'errors':>6} {'docs/s':>7} {'p50 ms':>8} {'p99 ms':>8}  slowest")
    for row in rows.values():
        print(f"{row['path']:<8} {row['validations']:>11} {row['errors']:>6} {row['per_s']:>7} {row['p50_ms']:>8} "
              f"{row['p99_ms']:>8}  {row['slowest']} ({row['slowest_ms']} ms)")
    print(f"ratio rssp/pyhanko = {ratio:.3f}; {len(data['documents'])} documents x {args.rounds} rounds, "
          f"workers {args.workers}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--doc", default="pades-B-LTA",
                        choices=["pades-B-B", "pades-B-T", "pades-B-LT", "pades-B-LTA", "cades-attached-B-T"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--corpus", action="store_true", help="the real-world corpus (tests/realworld_corpus.py)")
    parser.add_argument("--out")
    args = parser.parse_args()
    if args.corpus:
        run_corpus(args)
        return

    with tempfile.TemporaryDirectory(prefix="rssp-bench-validsign-") as tmp:
        base = Path(tmp)
        thread = ServerThread()
        port = free_port()
        pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
        hits: dict[str, int] = {}
        server = counting_animator(thread, pki, port, hits)
        dep = None
        try:
            corpus = build_corpus(pki)
            doc = corpus.docs[args.doc]
            dep = make_instance(base / "instance", pki, args.workers)
            results = asyncio.run(measure(args, dep, doc, corpus.root, hits))
        finally:
            if dep is not None:
                dep.stop()
            server.close()
            thread.close()

    ratio = results["rssp"].rate / results["pyhanko"].rate if results["pyhanko"].rate else float("nan")
    report = {
        "benchmark": "validates/validSign vs pyHanko in-process", "document": args.doc,
        "document_bytes": len(doc), "workers": args.workers, "concurrency": args.concurrency,
        "seconds_per_round": args.seconds, "rounds": args.rounds, "cpus": os.cpu_count(),
        "python": platform.python_version(), "results": [r.row() for r in results.values()],
        "ratio_rssp_over_pyhanko": round(ratio, 3), "target": TARGET,
        "verdict": "PASS" if ratio >= TARGET else "MISS",
    }
    print(f"{'path':<8} {'calls':>6} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'revocation reqs':>16}")
    for r in results.values():
        row = r.row()
        print(f"{r.path:<8} {row['calls']:>6} {row['rate_per_s']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8} "
              f"{row['revocation_requests_during_rounds']:>16}")
    print(f"ratio rssp/pyhanko = {ratio:.3f} (target >= {TARGET}: {report['verdict']}); document {args.doc}, "
          f"{len(doc)} bytes, workers {args.workers}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
