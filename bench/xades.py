"""validates/validSign of a XAdES B-LTA over HTTP against the same validation in-process, same run.

What it does (see docs/benchmarks.md, "XAdES validation"):

1. Makes the validation corpus PKI of the test suite (tests/validation_corpus.py: certomancer;
   OCSP, CRLs served by its animator on a loopback port) and signs one XML invoice with rssp's
   XAdES engine (``--level``, default B-LTA; ``--envelope``, default Enveloped).
2. Makes a throw-away instance (``rssp init --production``), trusts the corpus root in
   ``[validation]``, starts ``rssp serve --workers W`` (bench/validsign.py's ``make_instance``).
3. Alternates timed rounds (``--seconds`` each, ``--rounds`` of each path):

   * in-process: rssp's own XAdES validation (``extensions.validates.xades.validate_xml``) on a
     validation engine in this process with the same settings, one call after the other (one
     core) — what the service does, without HTTP, JSON, Base64, the token and the gate;
   * rssp: ``validates/validSign`` with the Base64 document, ``--concurrency`` client tasks.

   Both paths are warmed up first, so revocation data is fetched once and then served from the
   revocation cache of each (the animator counts OCSP/CRL requests during the timed rounds).
4. Prints per path: calls, rate, p50, p99, and the ratio rssp/in-process; ``--out FILE`` writes JSON.

Run: ``.venv/bin/python bench/xades.py [--level B-LTA] [--envelope Enveloped] [--seconds S]
[--rounds R] [--concurrency C] [--workers W] [--out FILE]``.
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
from pathlib import Path
from typing import Any

import aiohttp

sys.path.insert(0, str(Path(__file__).resolve().parent))
from validsign import Result, make_instance, run_round  # noqa: E402 - also sets sys.path

from deployment import Deployment  # noqa: E402
from tsa_helpers import ServerThread  # noqa: E402
from validation_corpus import ValidationPki, counting_animator  # noqa: E402
from xades_helpers import INVOICE, build_signed  # noqa: E402

from extensions.validates.engine import ValidationEngine  # noqa: E402
from extensions.validates.settings import ValidationSettings  # noqa: E402
from extensions.validates.xades import validate_xml  # noqa: E402
from rssp.devpki import free_port  # noqa: E402


async def measure(args: argparse.Namespace, dep: Deployment, doc: bytes, pki: ValidationPki,
                  hits: dict[str, int]) -> dict[str, Result]:
    settings = ValidationSettings(trust_anchors=(pki.cert("root"),), tsa_anchors=(pki.cert("root"),),
                                  fetch_allow=(f"{pki.prefix}/",))
    engine = ValidationEngine(settings)
    engine.start()
    try:
        return await _measure(args, dep, doc, engine, hits)
    finally:
        await engine.close()


async def _measure(args: argparse.Namespace, dep: Deployment, doc: bytes, engine: ValidationEngine,
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

        async def in_process() -> bool:
            async def work(lane: Any) -> bool:
                outcomes = await validate_xml(engine.request(lane, None), doc, None)
                return all(o.indication.passed for o in outcomes)

            return await engine.run("bench", work)

        for _ in range(3):  # warm-up: revocation data fetched and cached on both paths, every worker
            assert await in_process(), "the in-process validation does not pass the document"
        await asyncio.gather(*(rssp_call() for _ in range(4 * args.workers)))
        assert await rssp_call(), "rssp does not pass the document"
        results = {"in-process": Result("in-process"), "rssp": Result("rssp")}
        for _ in range(args.rounds):
            await run_round(results["in-process"], in_process, 1, args.seconds, hits)
            await run_round(results["rssp"], rssp_call, args.concurrency, args.seconds, hits)
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--level", default="B-LTA", choices=["B-B", "B-T", "B-LT", "B-LTA"])
    parser.add_argument("--envelope", default="Enveloped", choices=["Enveloped", "Enveloping"])
    parser.add_argument("--seconds", type=float, default=5.0)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--concurrency", type=int, default=4)
    parser.add_argument("--workers", type=int, default=1)
    parser.add_argument("--out")
    args = parser.parse_args()

    with tempfile.TemporaryDirectory(prefix="rssp-bench-xades-") as tmp:
        base = Path(tmp)
        thread = ServerThread()
        port = free_port()
        pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
        hits: dict[str, int] = {}
        server = counting_animator(thread, pki, port, hits)
        dep = None
        try:
            doc = build_signed(pki, {"doc": ("good", args.level, args.envelope, INVOICE)})["doc"]
            dep = make_instance(base / "instance", pki, args.workers)
            results = asyncio.run(measure(args, dep, doc, pki, hits))
        finally:
            if dep is not None:
                dep.stop()
            server.close()
            thread.close()

    base_rate = results["in-process"].rate
    ratio = results["rssp"].rate / base_rate if base_rate else float("nan")
    report = {
        "benchmark": "validates/validSign (XAdES) over HTTP vs the same validation in-process",
        "level": args.level, "envelope": args.envelope, "document_bytes": len(doc), "workers": args.workers,
        "concurrency": args.concurrency, "seconds_per_round": args.seconds, "rounds": args.rounds,
        "cpus": os.cpu_count(), "python": platform.python_version(),
        "results": [r.row() for r in results.values()], "ratio_rssp_over_in_process": round(ratio, 3),
    }
    print(f"{'path':<11} {'calls':>6} {'rate/s':>8} {'p50 ms':>8} {'p99 ms':>8} {'revocation reqs':>16}")
    for r in results.values():
        row = r.row()
        print(f"{r.path:<11} {row['calls']:>6} {row['rate_per_s']:>8} {row['p50_ms']:>8} {row['p99_ms']:>8} "
              f"{row['revocation_requests_during_rounds']:>16}")
    print(f"ratio rssp/in-process = {ratio:.3f}; XAdES {args.level} {args.envelope}, {len(doc)} bytes, "
          f"workers {args.workers}")
    if args.out:
        Path(args.out).write_text(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
