"""The real-world validation corpus (fixtures/realworld/MANIFEST.json) and how its outcomes are judged.

Every document and certificate path comes from another project's public test suite (esig/dss,
pyHanko, NIST PKITS as pyhanko-certvalidator carries it); the manifest records for each its
source (repository, path, commit), the outcome that suite asserts, the trust anchors and the
validation time needed to validate it offline. The data files themselves are not in this
repository (test data fetched from other projects is kept in the workplace's shared/ folder):
:func:`data_dir` finds them.

One rule judges rssp's answer and pyHanko's alone alike (:func:`agrees`):

- ``valid`` (the suite asserts every signature intact and valid): ``TOTAL_PASSED``, or
  ``INDETERMINATE`` for want of revocation data when the file carries none (or the manifest
  says which data is missing): the outcome then depends on revocation data that is not in the
  file, and validation here is offline;
- ``failed``: ``TOTAL_FAILED`` (with the asserted sub-indication, if the suite asserts one);
- ``indeterminate``: ``INDETERMINATE`` (likewise);
- ``modified`` (a change after signing the signature does not allow): anything but a pass, and
  not for want of revocation data;
- ``not_passed``: an indication other than ``TOTAL_PASSED``.

An error (a 4xx/5xx answer, or pyHanko raising) never agrees.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
MANIFEST = ROOT / "fixtures" / "realworld" / "MANIFEST.json"
# INDETERMINATE sub-indications that mean "the revocation data needed is not at hand"
WANT_OF_REVOCATION = {"TRY_LATER", "CERTIFICATE_CHAIN_GENERAL_FAILURE", "REVOCATION_OUT_OF_BOUNDS_NO_POE",
                      "OUT_OF_BOUNDS_NOT_REVOKED", "NO_POE"}
ERROR = "ERROR"


def data_dir() -> Path | None:
    """Where the corpus's files are: ``RSSP_REALWORLD_DIR``, else ``fixtures/realworld/files`` (a
    local copy), else ``realworld/`` in the workplace's shared/ folder (beside the clone in CI)."""
    candidates = [os.environ.get("RSSP_REALWORLD_DIR"), ROOT / "fixtures" / "realworld" / "files",
                  ROOT.parent / "shared" / "realworld", Path("/work/shared/realworld")]
    for candidate in candidates:
        if candidate and (Path(candidate) / "anchors").is_dir():
            return Path(candidate)
    return None


def manifest() -> dict[str, Any]:
    return json.loads(MANIFEST.read_text())


@dataclass(frozen=True)
class Verdict:
    indication: str  # TOTAL_PASSED / TOTAL_FAILED / INDETERMINATE / ERROR
    sub: str | None = None
    detail: str = ""


def agrees(entry: dict[str, Any], got: Verdict) -> bool:
    """Whether ``got`` is the outcome the source suite asserts for this document (rules above)."""
    expect, sub = entry["expect"], entry.get("sub_indication")
    if got.indication == ERROR:
        return False
    if expect == "valid":
        if got.indication == "TOTAL_PASSED":
            return True
        offline = not entry["revocation_in_file"] or bool(entry.get("revocation_missing"))
        return offline and got.indication == "INDETERMINATE" and (got.sub in WANT_OF_REVOCATION or got.sub is None)
    if expect == "failed":
        return got.indication == "TOTAL_FAILED" and (sub is None or got.sub == sub)
    if expect == "indeterminate":
        return got.indication == "INDETERMINATE" and (sub is None or got.sub == sub)
    if expect == "modified":
        return got.indication == "TOTAL_FAILED" or (got.indication == "INDETERMINATE"
                                                   and got.sub not in WANT_OF_REVOCATION)
    assert expect == "not_passed", expect
    return got.indication != "TOTAL_PASSED"


def path_agrees(entry: dict[str, Any], got: Verdict, status: str | None) -> bool:
    """A certificate path: PKITS asserts success, a revocation, or some other failure."""
    expect = entry["expect"]
    if got.indication == ERROR:
        return False
    if expect == "TOTAL_PASSED":
        return got.indication == "TOTAL_PASSED"
    if expect == "REVOKED":
        return got.indication != "TOTAL_PASSED" and status in ("revoked", "suspended")
    return got.indication != "TOTAL_PASSED"


def overall(indications: list[Verdict]) -> Verdict:
    """A document's verdict from its signatures' (the first failure, else the first indeterminate)."""
    for main in ("TOTAL_FAILED", "INDETERMINATE"):
        for verdict in indications:
            if verdict.indication == main:
                return verdict
    return indications[0] if indications else Verdict(ERROR, detail="no signature")
