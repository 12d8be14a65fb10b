"""validSign and validCert on documents and certificate paths made by other software (issue #13).

The corpus (tests/realworld_corpus.py, fixtures/realworld/MANIFEST.json): signed PDFs and CMS
signatures from esig/dss's and pyHanko's test suites, NIST PKITS paths with their CRLs, each
with the outcome its suite asserts. One production instance trusts every anchor the corpus
names and fetches nothing (``max_fetches = 0``): validation is offline, with what each file
carries (and, for validCert, the CRLs sent in the request). Each answer is judged by the
same rule as pyHanko's own classic validation of the same file with the same trust and time,
computed here in-process: rssp must agree with every asserted outcome except the
disagreements the manifest records (with their reason; docs/validation.md lists them), and
at least as often as pyHanko alone. No answer may be a 5xx.
"""

from __future__ import annotations

import asyncio
import base64
import os
import tomllib
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
import realworld_pyhanko
import tomli_w
from asn1crypto import crl, pem, x509
from client import CSC
from deployment import Deployment
from realworld_corpus import ERROR, Verdict, agrees, data_dir, manifest, path_agrees

DATA = data_dir()
pytestmark = pytest.mark.skipif(DATA is None, reason="the real-world corpus files are not here (see realworld_corpus)")
PARALLEL = 4


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode("ascii")


def moment(value: str) -> datetime:
    return datetime.strptime(value, "%Y%m%d%H%M%SZ").replace(tzinfo=UTC)


def load_cert(path: Path) -> x509.Certificate:
    data = path.read_bytes()
    return x509.Certificate.load(pem.unarmor(data)[2] if pem.detect(data) else data)


@dataclass
class Env:
    dep: Deployment
    manifest: dict[str, Any]


@pytest.fixture(scope="module")
def renv(tmp_path_factory):
    assert DATA is not None
    base = tmp_path_factory.mktemp("realworld")
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    dep = Deployment(base / "instance", None, env)
    dep.rssp("init", str(dep.directory), "--production")
    dep.add_user("alice", "alice-password")
    data = manifest()
    anchors = sorted({a for entry in data["documents"] + data["paths"] for a in entry["anchors"]})
    config_path = dep.directory / "rssp.toml"
    raw = tomllib.loads(config_path.read_text())
    raw["validation"] = {**raw.get("validation", {}), "trust_anchors": [str(DATA / a) for a in anchors],
                         "max_fetches": 0}
    raw["server"] = {**raw.get("server", {}), "max_body_bytes": 8 * 1024 * 1024}
    config_path.write_text(tomli_w.dumps(raw))
    dep.seal_config()
    dep.start(workers=1)
    try:
        yield Env(dep, data)
    finally:
        dep.stop()


def anchors_of(entry: dict[str, Any]) -> list[x509.Certificate]:
    assert DATA is not None
    return [load_cert(DATA / a) for a in entry["anchors"]]


async def rssp_document(csc: CSC, token: str, entry: dict[str, Any]) -> Verdict:
    assert DATA is not None
    data = (DATA / entry["file"]).read_bytes()
    body: dict[str, Any] = {"validationTime": entry["validation_time"], "returnReport": "etsi"}
    if "detached_content" in entry:
        body |= {"signature": b64(data), "document": b64((DATA / entry["detached_content"]).read_bytes())}
    else:
        body["document"] = b64(data)
    status, answer = await csc.call("validates/validSign", body, token)
    assert status < 500, (entry["id"], status, answer)
    if status != 200:
        return Verdict(ERROR, detail=f"{status} {answer.get('error_description')}")
    sigs = answer["signatures"]
    assert answer["report"], entry["id"]  # the ETSI report never fails where the JSON answer succeeds
    worst = next((s for main in ("TOTAL_FAILED", "INDETERMINATE") for s in sigs if s["indication"] == main), None)
    assert (worst or {"indication": "TOTAL_PASSED"})["indication"] == answer["indication"], answer
    return Verdict(answer["indication"], worst.get("subIndication") if worst else None,
                   ", ".join(f"{s['signatureID']}:{s['indication']}/{s.get('subIndication')}" for s in sigs))


async def pyhanko_document(entry: dict[str, Any]) -> Verdict:
    assert DATA is not None
    data = (DATA / entry["file"]).read_bytes()
    detached = (DATA / entry["detached_content"]).read_bytes() if "detached_content" in entry else None
    return await realworld_pyhanko.document(entry, data, detached, anchors_of(entry),
                                            moment(entry["validation_time"]))


async def gather_bounded(calls: list[Any]) -> list[Any]:
    gate = asyncio.Semaphore(PARALLEL)

    async def one(call: Any) -> Any:
        async with gate:
            return await call

    return await asyncio.gather(*(one(c) for c in calls))


def report(kind: str, rows: list[tuple[dict[str, Any], Verdict, bool, Verdict, bool]]) -> str:
    lines = [f"{kind}: rssp agrees on {sum(r[2] for r in rows)}/{len(rows)}, "
             f"pyHanko alone on {sum(r[4] for r in rows)}/{len(rows)}"]
    for entry, ours, ok, theirs, _their_ok in rows:
        if not ok:
            lines.append(f"  {entry['id']} expect {entry['expect']}: rssp {ours.indication}/{ours.sub} "
                         f"[{ours.detail}] pyHanko {theirs.indication}/{theirs.sub} {theirs.detail[:80]}")
    return "\n".join(lines)


@pytest.fixture(scope="module")
async def doc_rows(http, renv) -> list[tuple[dict[str, Any], Verdict, bool, Verdict, bool]]:
    """Each document validated by rssp (over HTTP, a few at once) and by pyHanko alone."""
    csc = CSC(http, renv.dep)
    token = await csc.token("alice")
    docs = renv.manifest["documents"]
    ours = await gather_bounded([rssp_document(csc, token, e) for e in docs])
    theirs = [await pyhanko_document(e) for e in docs]
    return [(e, o, agrees(e, o), t, agrees(e, t)) for e, o, t in zip(docs, ours, theirs, strict=True)]


async def test_documents_agree_with_their_suites(doc_rows):
    """Every document: rssp's indication is what its suite asserts, or a disagreement the
    manifest records with its reason (docs/validation.md); never a 5xx."""
    summary = report("documents", doc_rows)
    print(summary)
    unexpected = [r for r in doc_rows if not r[2] and "disagreement" not in r[0]]
    stale = [r[0]["id"] for r in doc_rows if r[2] and "disagreement" in r[0]]
    assert not unexpected, summary
    assert not stale, f"recorded disagreements that now agree: {stale}"
    assert len(doc_rows) >= 60


async def test_documents_agree_as_often_as_pyhanko(doc_rows):
    """rssp agrees with the source suites at least as often as pyHanko alone, same trust and time."""
    assert sum(r[2] for r in doc_rows) >= sum(r[4] for r in doc_rows), report("documents", doc_rows)


async def rssp_path(csc: CSC, token: str, entry: dict[str, Any]) -> tuple[Verdict, str | None]:
    assert DATA is not None
    certs = [b64((DATA / p).read_bytes()) for p in [entry["certificate"], *entry["chain"]]]
    crls = [b64((DATA / p).read_bytes()) for p in entry["crls"]]
    status, answer = await csc.call("validates/validCert", {"certificates": certs, "crls": crls,
                                                            "validationTime": entry["validation_time"]}, token)
    assert status < 500, (entry["id"], status, answer)
    if status != 200:
        return Verdict(ERROR, detail=f"{status} {answer.get('error_description')}"), None
    return Verdict(answer["indication"], answer.get("subIndication")), answer["status"]


async def pyhanko_path(entry: dict[str, Any]) -> tuple[Verdict, str | None]:
    assert DATA is not None
    leaf = load_cert(DATA / entry["certificate"])
    chain = [load_cert(DATA / p) for p in entry["chain"]]
    crls = [crl.CertificateList.load((DATA / p).read_bytes()) for p in entry["crls"]]
    return await realworld_pyhanko.path(leaf, chain, crls, anchors_of(entry), moment(entry["validation_time"]))


async def test_certificate_paths_agree_with_pkits(http, renv):
    """NIST PKITS paths with their CRLs sent in the request: validCert agrees with every asserted
    outcome (valid, revoked, invalid), at least as often as pyHanko alone."""
    csc = CSC(http, renv.dep)
    token = await csc.token("alice")
    paths = renv.manifest["paths"]
    ours = await gather_bounded([rssp_path(csc, token, e) for e in paths])
    theirs = [await pyhanko_path(e) for e in paths]
    rows = [(e, o[0], path_agrees(e, *o), t[0], path_agrees(e, *t))
            for e, o, t in zip(paths, ours, theirs, strict=True)]
    summary = report("paths", rows)
    print(summary)
    unexpected = [r for r in rows if not r[2] and "disagreement" not in r[0]]
    assert not unexpected, summary
    assert sum(r[2] for r in rows) >= sum(r[4] for r in rows), summary
    assert len(paths) >= 20
