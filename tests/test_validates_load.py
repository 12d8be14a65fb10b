"""validates/validSign under load: bounded work per document, and no caller starving the others (issue #20, finding 5).

A PDF with thousands of small incremental updates (4,000 make a 480 KB file) cost pyHanko's
history lookups quadratic time: 72 s for one, and three of them held every other validation
for a minute. Now a PDF has at most ``[validation] max_pdf_revisions`` revisions (else a
400 before any work), the history lookups are indexed, validations run on several threads,
and the gate keeps one thread for a caller with nothing running and turns away (503,
``Retry-After``) what does not fit in one caller's share.

The instance here lifts the revision cap (5,000) so that the 4,000-update PDF is really
validated — seconds of CPU — while another user's ordinary validations must finish first.
The same kind of bound holds for path building over the certificates a signature carries.
"""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from typing import Any

import pytest
from certomancer.integrations.aiohttp_animator import build_animator_app
from client import CSC
from deployment import Deployment
from tsa_helpers import HttpServer, ServerThread
from validation_corpus import ValidationPki, b64, run_apart, validation_instance
from validation_hostile import ladder_cms, many_updates

from rssp.devpki import free_port

UPDATES = 4000
PER_CALLER = 4
LADDER = 23  # levels of two certificates each: 2**23 candidate paths
SAFETY_SECONDS = 90  # a safety net only: a bounded path search answers within a second or two


@dataclass
class Env:
    dep: Deployment
    light: bytes  # a B-B PDF of the corpus's good signer
    heavy: bytes  # the same with UPDATES incremental updates


@pytest.fixture(scope="module")
def lenv(tmp_path_factory):
    base = tmp_path_factory.mktemp("validates-load")
    thread, port = ServerThread(), free_port()
    pki = ValidationPki(base / "keys", f"http://127.0.0.1:{port}")
    animator = HttpServer(thread, build_animator_app(pki.config.pki_archs, with_web_ui=False), port)
    try:
        animator.start()
        light = run_apart(pki.sign_pdf("good", "B-B"))
        dep = validation_instance(base / "instance", pki, {
            "fetch_allow": [f"http://127.0.0.1:{port}/val/"], "max_pdf_revisions": UPDATES + 1000,
            "validations_per_caller": PER_CALLER}, users=("alice", "mallory"))
        try:
            yield Env(dep, light, many_updates(light, UPDATES))
        finally:
            dep.stop()
    finally:
        animator.close()
        thread.close()


async def valid_sign(csc: CSC, token: str, pdf: bytes, log: list[str], name: str) -> tuple[int, Any, str | None]:
    """validSign, noting ``name`` in ``log`` when the answer arrives; (status, body, Retry-After)."""
    hdrs = {"Content-Type": "application/json", "Authorization": f"Bearer {token}"}
    async with csc.session.post(f"{csc.dep.base}/csc/v2/validates/validSign", json={"document": b64(pdf)},
                                headers=hdrs) as resp:
        body = await resp.json(content_type=None)
        log.append(name)
        return resp.status, body, resp.headers.get("Retry-After")


async def test_heavy_documents_of_one_caller_do_not_starve_another(http, lenv):
    """mallory sends six 4,000-update PDFs at once: four fit in a caller's share (the rest: 503 with
    Retry-After), and alice's ordinary validations, sent afterwards, all finish before any of them."""
    csc = CSC(http, lenv.dep)
    mallory, alice = await csc.token("mallory"), await csc.token("alice")
    log: list[str] = []
    heavy = [asyncio.ensure_future(valid_sign(csc, mallory, lenv.heavy, log, "heavy")) for _ in range(6)]
    await asyncio.sleep(1.0)  # sequencing only: the heavy ones are on their way first
    light = [await valid_sign(csc, alice, lenv.light, log, "light") for _ in range(3)]
    light += await asyncio.gather(*(valid_sign(csc, alice, lenv.light, log, "light") for _ in range(3)))
    assert all(status == 200 and body["indication"] == "TOTAL_PASSED" for status, body, _ in light), light
    answers = await asyncio.gather(*heavy)
    refused = [(body, retry) for status, body, retry in answers if status == 503]
    assert len(refused) == 6 - PER_CALLER, answers
    assert all(body["error"] == "temporarily_unavailable" and retry for body, retry in refused), refused
    done = [body for status, body, _ in answers if status == 200]
    assert len(done) == PER_CALLER and all("indication" in body for body in done), answers
    first_heavy = next(i for i, name in enumerate(log) if name == "heavy" and i >= 6 - PER_CALLER)
    assert log[:6 - PER_CALLER] == ["heavy"] * (6 - PER_CALLER)  # the refusals come at once
    assert log[6 - PER_CALLER:first_heavy] == ["light"] * 6, log


async def test_4000_updates_refused_by_default_while_others_proceed(csc, dep, lenv):
    """The default cap (500 revisions): the 4,000-update PDF is a 400 before any work; the
    validations sent with it are answered."""
    token = await csc.token("alice")
    log: list[str] = []
    heavy = asyncio.ensure_future(valid_sign(csc, token, lenv.heavy, log, "heavy"))
    others = await asyncio.gather(*(valid_sign(csc, token, lenv.light, log, "light") for _ in range(3)))
    status, body, _ = await heavy
    assert status == 400 and body["error"] == "invalid_request", body
    assert f"{UPDATES + 2} revisions" in body["error_description"] and "at most 500" in body["error_description"], body
    # the development instance does not trust the corpus root: an indication, not an error
    assert all(s == 200 and b["indication"] == "INDETERMINATE" for s, b, _ in others), others


async def test_path_building_is_bounded(http, lenv):
    """A 23 KB CMS signature carrying two CA certificates per name over 23 levels: 2**23 candidate
    paths (minutes of CPU, and every dead end kept in memory). Path building gives up after a
    bounded number of steps: no path, an indication."""
    csc = CSC(http, lenv.dep)
    token = await csc.token("alice")
    cms = run_apart(ladder_cms(LADDER))
    status, body = await asyncio.wait_for(csc.call("validates/validSign", {"document": b64(cms)}, token),
                                          SAFETY_SECONDS)
    assert status == 200, body
    assert (body["indication"], body["signatures"][0]["subIndication"]) == \
        ("INDETERMINATE", "NO_CERTIFICATE_CHAIN_FOUND"), body
