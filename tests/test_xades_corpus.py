"""validSign on XAdES made by other software: the XAdES files of EU DSS's validation tests (issue #15).

fixtures/xades/MANIFEST.json records, for each file, its source (esig/dss, path, commit, the test
class), the outcome that test asserts, the trust anchors (the top certificates the file carries)
and the validation time (the claimed signing time, after the embedded revocation data). The files
are not in this repository: they are read from ``RSSP_XADES_CORPUS`` or ``/work/corpus/xades``
(``fixtures/xades/fetch.py`` rebuilds that directory from a clone of esig/dss); without them the
test is skipped. One production instance trusts every anchor and fetches nothing
(``max_fetches = 0``); each answer is judged by tests/realworld_corpus.py's rule, and must agree
except for the disagreements the manifest records with their reason. The B-LTA files are the
cross-check of rssp's archive time-stamp input against DSS's: their archive time-stamps must never
be a hash failure.
"""

from __future__ import annotations

import json
import os
import tomllib
from pathlib import Path
from typing import Any

import pytest
import tomli_w
from client import CSC
from deployment import Deployment
from realworld_corpus import ERROR, Verdict, agrees
from validation_corpus import b64

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = json.loads((ROOT / "fixtures" / "xades" / "MANIFEST.json").read_text())
DATA = next((Path(p) for p in (os.environ.get("RSSP_XADES_CORPUS"), "/work/corpus/xades")
             if p and (Path(p) / "anchors").is_dir()), None)
pytestmark = pytest.mark.skipif(DATA is None, reason="the XAdES corpus is not here (RSSP_XADES_CORPUS, "
                                                     "/work/corpus/xades; fixtures/xades/fetch.py)")


@pytest.fixture(scope="module")
def xcorpus(tmp_path_factory):
    assert DATA is not None
    base = tmp_path_factory.mktemp("xades-corpus")
    env = {k: v for k, v in os.environ.items() if k != "RSSP_DATABASE_URL"}
    dep = Deployment(base / "instance", None, env)
    dep.rssp("init", str(dep.directory), "--production")
    dep.add_user("alice", "alice-password")
    anchors = sorted({a for entry in MANIFEST["documents"] for a in entry["anchors"]})
    config_path = dep.directory / "rssp.toml"
    raw = tomllib.loads(config_path.read_text())
    raw["validation"] = {**raw.get("validation", {}), "trust_anchors": [str(DATA / a) for a in anchors],
                         "max_fetches": 0}
    raw["server"] = {**raw.get("server", {}), "max_body_bytes": 8 * 1024 * 1024}  # DSS's Official Journal files
    config_path.write_text(tomli_w.dumps(raw))
    dep.seal_config()
    dep.start(workers=1)
    try:
        yield dep
    finally:
        dep.stop()


async def validate(csc: CSC, token: str, entry: dict[str, Any]) -> tuple[Verdict, list[dict[str, Any]]]:
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
        return Verdict(ERROR, detail=f"{status} {answer.get('error_description')}"), []
    assert answer["report"], entry["id"]
    sigs = answer["signatures"]
    worst = next((s for main in ("TOTAL_FAILED", "INDETERMINATE") for s in sigs if s["indication"] == main), None)
    return Verdict(answer["indication"], worst.get("subIndication") if worst else None,
                   ", ".join(f"{s['signatureID']}:{s['indication']}/{s.get('subIndication')}" for s in sigs)), sigs


async def test_dss_xades_files_agree_with_their_tests(http, xcorpus):
    csc = CSC(http, xcorpus)
    token = await csc.token("alice")
    rows = []
    for entry in MANIFEST["documents"]:
        verdict, sigs = await validate(csc, token, entry)
        rows.append((entry, verdict, agrees(entry, verdict), sigs))
    lines = [f"XAdES corpus: rssp agrees on {sum(r[2] for r in rows)}/{len(rows)}"]
    lines += [f"  {e['id']} expect {e['expect']}/{e.get('sub_indication')}: {v.indication}/{v.sub} [{v.detail}]"
              for e, v, ok, _ in rows if not ok]
    summary = "\n".join(lines)
    print(summary)
    unexpected = [r[0]["id"] for r in rows if not r[2] and "disagreement" not in r[0]]
    stale = [r[0]["id"] for r in rows if r[2] and "disagreement" in r[0]]
    assert not unexpected, summary
    assert not stale, f"recorded disagreements that now agree: {stale}"
    archive = [t for _, _, _, sigs in rows for s in sigs for t in s["timestamps"] if t["type"] == "archive"]
    assert len(archive) >= 8 and all(t["indication"] != "TOTAL_FAILED" for t in archive), archive
    assert sum(t["indication"] == "TOTAL_PASSED" for t in archive) >= 3
