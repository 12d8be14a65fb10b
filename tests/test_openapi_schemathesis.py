"""schemathesis against the served ``/csc/v2/openapi.json`` and the live server (#18).

Every documented method gets generated requests, valid and invalid, with a signer's service
token: no answer may be a 5xx, every answer must match the status codes, content type and
schema the document declares, and a request that violates the request schema must be refused.
On SQLite and on PostgreSQL (the ``dep`` deployments). The generated IDs, SADs and tokens are
random, so nothing belonging to the suite's users is touched.
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import sys

from ops_helpers import login

CHECKS = ("not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance,"
          "negative_data_rejection")


async def test_the_served_openapi_document_holds_for_the_live_server(dep, http):
    if "fuzz" not in dep.passwords:
        dep.add_user("fuzz", "fuzz-password")
    token = await login(http, dep.base, "fuzz", "fuzz-password")
    run = await asyncio.to_thread(
        subprocess.run, [sys.executable, "-m", "schemathesis.cli", "run", f"{dep.base}/csc/v2/openapi.json",
         "-H", f"Authorization: Bearer {token}", "--checks", CHECKS, "--max-examples", "15", "--workers", "2",
         "--phases", "examples,coverage,fuzzing", "--seed", "18", "--no-color"],
        capture_output=True, text=True, timeout=300, env=dep.env)
    assert run.returncode == 0, run.stdout[-6000:] + run.stderr[-2000:]
    summary = run.stdout.split("SUMMARY")[-1]
    assert not re.search(r"\b\d+ failed\b", summary) and "passed" in summary, run.stdout[-4000:]
