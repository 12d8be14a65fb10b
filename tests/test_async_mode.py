"""Asynchronous mode (#19): signHash with ``operationMode: "A"``, ``signatures/signPolling``,
jobs kept in the database and run by any worker, ``response_uri`` notifications.

Each backend gets an instance of its own (``rssp serve --workers 2``) whose ``[async]`` table
allows callbacks to one port of 127.0.0.2 (by address) and of localhost (by name), plain http,
a 3-second lease and a hold file: while
``hold-jobs`` exists in the instance directory a claimed job waits before it runs, so a test
can see a job pending, kill the worker that holds it, or restart the deployment under it.
"""

from __future__ import annotations

import asyncio
import base64
import ipaddress
import json
import os
import secrets
import signal
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from aiohttp import web
from sqlalchemy import select, update

from validation_corpus import simple_pdf
from client import CSC, ECDSA_SHA256, b64, digest
from deployment import Deployment, free_port, make_deployment_minimal
from oauth_helpers import add_client, credential_token, verify_signature
from rssp.errors import CSCError
from rssp.jobs.callback import CallbackPolicy
from rssp.store import open_store
from rssp.store.schema import audit, credentials, jobs
from test_csc_flow import certificate

UNKNOWN = {"error": "invalid_request", "error_description": "Invalid parameter requestID"}
LEASE = 3
CALLBACK_HOST = "127.0.0.2"  # listed literally; localhost (127.0.0.1) is listed only by name


@dataclass
class Instance:
    dep: Deployment
    callback_port: int

    @property
    def hold_file(self):
        return self.dep.directory / "hold-jobs"

    @contextmanager
    def hold(self) -> Iterator[None]:
        """Claimed jobs wait while this is open (``[async] test_hold_file``)."""
        self.hold_file.touch()
        try:
            yield
        finally:
            self.hold_file.unlink(missing_ok=True)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def inst(request, tmp_path_factory) -> Iterator[Instance]:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"rssp_async_{secrets.token_hex(4)}")
    dep = make_deployment_minimal(tmp_path_factory.mktemp(f"async-{request.param}") / "instance", url)
    for user in ("alice", "bob"):  # alice: the OAuth helpers' signer
        dep.add_user(user, f"{user}-password")
    dep.add_credential("alice", "alice", "ec-p256", multisign=10)
    dep.add_credential("spare", "alice", "ec-p256", multisign=10)
    port = free_port()
    with open(dep.directory / "rssp.toml", "a", encoding="utf-8") as fh:
        fh.write(f'\n[async]\nresponse_uri_hosts = ["{CALLBACK_HOST}:{port}", "localhost:{port}"]\n'
                 'response_uri_allow_http = true\n'
                 f'lease_seconds = {LEASE}\npoll_interval_seconds = 0.5\ncallback_backoff_seconds = 0.2\n'
                 'callback_timeout_seconds = 5\ntest_hold_file = "hold-jobs"\n')
    dep.seal_config()
    dep.start(workers=2)
    yield Instance(dep, port)
    dep.stop()


@pytest_asyncio.fixture(scope="module")
async def fresh_http() -> AsyncIterator[aiohttp.ClientSession]:
    """A new connection per request: a test kills a worker, whose kept-alive connections die with it."""
    connector = aiohttp.TCPConnector(force_close=True)
    async with aiohttp.ClientSession(connector=connector, timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest.fixture
def csc(fresh_http, inst) -> CSC:
    return CSC(fresh_http, inst.dep)


# ---------------------------------------------------------------------------- helpers

async def sign_async(csc: CSC, token: str, cred, sad: str | None, hashes: list[bytes], **extra: Any):
    body: dict[str, Any] = {"credentialID": cred.id, "hashes": [b64(h) for h in hashes], "signAlgo": ECDSA_SHA256,
                            "operationMode": "A", **extra}
    if sad is not None:
        body["SAD"] = sad
    return await csc.call("signatures/signHash", body, token)


async def poll(csc: CSC, token: str, request_id: str, **extra: Any):
    return await csc.call("signatures/signPolling", {"requestID": request_id, **extra}, token)


async def eventually(check, what: str, timeout: float = 90):
    """Await ``check()`` until it returns something truthy (a safety timeout, not a timing assertion)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await check()
        if value:
            return value
        await asyncio.sleep(0.2)
    pytest.fail(f"timed out waiting for {what}")


async def finished(csc: CSC, token: str, request_id: str):
    async def done():
        status, body = await poll(csc, token, request_id)
        return None if status == 202 else (status, body)

    return await eventually(done, f"job {request_id} to finish")


async def query(dep: Deployment, statement):
    store = open_store(dep.db_url)
    try:
        return await store.query(lambda conn: conn.execute(statement).all())
    finally:
        await store.close()


async def execute(dep: Deployment, statement) -> None:
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            await conn.execute(statement)
    finally:
        await store.close()


async def job_row(dep: Deployment, request_id: str):
    rows = await query(dep, select(jobs).where(jobs.c.id == request_id))
    return rows[0] if rows else None


async def job_records(dep: Deployment, request_id: str, outcome: str) -> list[Any]:
    rows = await query(dep, select(audit).where(audit.c.action == "signature.job", audit.c.outcome == outcome))
    return [r for r in rows if json.loads(r.detail)["responseID"] == request_id]


async def verify_all(csc: CSC, token: str, cred, hashes: list[bytes], signatures: list[str]) -> None:
    cert = await certificate(csc, token, cred)
    assert len(signatures) == len(hashes)
    for h, s in zip(hashes, signatures, strict=True):
        verify_signature(cert, h, base64.b64decode(s))


async def enqueue_claimed(csc: CSC, inst: Instance, token: str, cred, sad: str, hashes: list[bytes]) -> tuple[str, int]:
    """Under a hold: a mode-A request whose job a worker has claimed; its responseID and that worker's PID."""
    status, body = await sign_async(csc, token, cred, sad, hashes)
    assert status == 200, body
    rid = body["responseID"]

    async def claimant():
        row = await job_row(inst.dep, rid)
        return row.claimed_by if row is not None and row.status == "running" else None

    return rid, int((await eventually(claimant, "a worker to claim the job")).rsplit(":", 1)[1])


async def gone_process(pid: int) -> bool:
    """The process has exited (a zombie not yet reaped by ``rssp serve`` holds no sockets)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()  # noqa: ASYNC240 - a /proc file: never blocks
    except FileNotFoundError:
        return True
    return "\nState:\tZ" in status


async def serving_alone(csc: CSC, probes: int = 10) -> bool:
    """``probes`` requests in a row answered: the kernel no longer hands connections to the dead worker's
    socket (it leaves its SO_REUSEPORT group a moment after the process exits; one sent then is reset)."""
    try:
        for _ in range(probes):
            if (await csc.call("info", {}))[0] != 200:
                return False
    except aiohttp.ClientError:
        return False
    return True


def fresh_hashes(n: int, label: str) -> list[bytes]:
    return [digest(f"{label} {i} {time.time()} {secrets.token_hex(4)}".encode()) for i in range(n)]


# ---------------------------------------------------------------------------- tests

def test_callback_policy_addresses():
    """Public unicast addresses pass; loopback, private, link-local, multicast and mapped ones only if named."""
    policy = CallbackPolicy.parse(("cb.example", "10.1.2.3:8443"), False, ("192.168.7.0/24",))
    allowed = ["8.8.8.8", "2001:4860:4860::8888", "10.1.2.3", "192.168.7.9"]
    refused = ["127.0.0.1", "::1", "10.0.0.1", "172.16.0.1", "192.168.8.1", "169.254.169.254", "fe80::1",
               "fc00::1", "100.64.0.1", "0.0.0.0", "::", "224.0.0.1", "ff02::1", "::ffff:127.0.0.1",
               "255.255.255.255"]
    assert [a for a in allowed if not policy.address_allowed(ipaddress.ip_address(a))] == []
    assert [a for a in refused if policy.address_allowed(ipaddress.ip_address(a))] == []
    assert policy.check_uri("https://CB.example/x?y=1") == "https://CB.example/x?y=1"
    assert policy.check_uri("https://10.1.2.3:8443/") == "https://10.1.2.3:8443/"
    for uri in ("http://cb.example/", "https://cb.example:8443/", "https://10.1.2.3/", "https://u@cb.example/",
                "https://cb.example.evil/", "https://evil/?cb.example", "//cb.example/", "https://cb.example/#x"):
        with pytest.raises(CSCError):
            policy.check_uri(uri)
    with pytest.raises(ValueError):
        CallbackPolicy.parse(("https://cb.example/path",), False, ())


async def test_info_announces_asynchronous_mode(csc):
    status, info = await csc.call("info", {})
    assert status == 200
    assert info["asynchronousOperationMode"] is True
    assert "signatures/signPolling" in info["methods"]


async def test_mode_a_spends_at_once_and_polling_gives_202_then_the_signatures(csc, inst):
    dep = inst.dep
    cred, token = dep.creds["alice"], await csc.token("alice")
    hashes = fresh_hashes(2, "async")
    sad = await csc.sad(token, cred, num=2, hashes=hashes)
    with inst.hold():
        status, body = await sign_async(csc, token, cred, sad, hashes, validity_period=120_000)
        assert status == 200 and set(body) == {"responseID"}, body
        rid = body["responseID"]
        status, pending = await poll(csc, token, rid)
        assert status == 202 and pending["error"] == "accepted_request", pending
        # the SAD was spent by the request, not by the job
        status, err = await csc.sign(token, cred, sad, hashes[:1], ECDSA_SHA256)
        assert status == 400 and err["error_description"] == "Invalid parameter SAD", err
        row = await job_row(dep, rid)
        stored = json.dumps([str(v) for v in row])
        assert sad not in stored and token not in stored  # the job holds no secret
        assert row.expires_at - row.created_at == pytest.approx(120, abs=0.01)
    status, result = await finished(csc, token, rid)
    assert status == 200 and set(result) == {"signatures"}, result
    await verify_all(csc, token, cred, hashes, result["signatures"])
    assert await poll(csc, token, rid) == (200, result)  # kept for every poll until the validity period ends
    assert len(await job_records(dep, rid, "created")) == 1
    assert len(await job_records(dep, rid, "completed")) == 1
    records = json.dumps([str(r) for r in await query(dep, select(audit))])
    assert sad not in records and token not in records


async def test_sign_doc_in_mode_a_gives_a_signed_pdf_through_polling(csc, inst):
    """signDoc (#19) asynchronously: spent at the request, 202 while held, then a PAdES document that validates."""
    dep = inst.dep
    cred, token = dep.creds["alice"], await csc.token("alice")
    pdf = simple_pdf(f"async signDoc {time.time()}".encode())
    sad = await csc.sad(token, cred, num=1, hashes=[digest(pdf)])
    body = {"credentialID": cred.id, "SAD": sad, "operationMode": "A", "documents": [
        {"document": b64(pdf), "signature_format": "P", "conformance_level": "Ades-B-T", "signAlgo": ECDSA_SHA256}]}
    with inst.hold():
        status, answer = await csc.call("signatures/signDoc", body, token)
        assert status == 200 and set(answer) == {"responseID"}, answer
        rid = answer["responseID"]
        assert (await poll(csc, token, rid))[0] == 202
        assert (await csc.call("signatures/signDoc", body, token))[1]["error_description"] == "Invalid parameter SAD"
        row = await job_row(dep, rid)
        assert sad not in row.payload and token not in row.payload
    status, result = await finished(csc, token, rid)
    assert status == 200 and set(result) == {"DocumentWithSignature"}, result
    status, report = await csc.call("validates/validSign", {"document": result["DocumentWithSignature"][0]}, token)
    assert status == 200 and report["indication"] == "TOTAL_PASSED", report
    assert [s["level"] for s in report["signatures"]] == ["B-T"]
    assert len(await job_records(dep, rid, "completed")) == 1


async def test_another_users_job_looks_unknown(csc, inst):
    dep = inst.dep
    cred, token, bob = dep.creds["alice"], await csc.token("alice"), await csc.token("bob")
    hashes = fresh_hashes(1, "mine")
    sad = await csc.sad(token, cred, hashes=hashes)
    status, body = await sign_async(csc, token, cred, sad, hashes)
    assert status == 200, body
    rid = body["responseID"]
    assert await poll(csc, bob, rid) == (400, UNKNOWN)
    assert await poll(csc, bob, "550e8400-e29b-41d4-a716-446655440000") == (400, UNKNOWN)
    status, err = await poll(csc, token, rid, userID="alice")
    assert status == 400 and err["error_description"] == "userID parameter SHALL be null"
    status, result = await finished(csc, token, rid)
    assert status == 200, result
    assert await poll(csc, bob, rid) == (400, UNKNOWN)  # finished: still not bob's


async def test_a_job_is_shown_only_to_the_oauth_client_that_asked(fresh_http, csc, inst):
    dep = inst.dep
    cred = dep.creds["alice"]
    portal = add_client(dep, "Portal", "https://sa.example/cb")
    other = add_client(dep, "Other", "https://other.example/cb")
    h1, h2 = fresh_hashes(2, "oauth")
    portal_token = (await credential_token(fresh_http, dep, portal, cred, [h1]))["access_token"]
    other_token = (await credential_token(fresh_http, dep, other, cred, [h2]))["access_token"]
    status, body = await sign_async(csc, portal_token, cred, None, [h1])  # the credential token is the SAD
    assert status == 200, body
    rid = body["responseID"]
    status, result = await finished(csc, portal_token, rid)
    assert status == 200, result
    await verify_all(csc, await csc.token("alice"), cred, [h1], result["signatures"])
    assert await poll(csc, other_token, rid) == (400, UNKNOWN)  # the same user, another client
    assert await poll(csc, await csc.token("alice"), rid) == (400, UNKNOWN)  # the same user, no client


async def test_a_response_uri_not_allowed_is_refused_before_anything_is_spent(csc, inst):
    dep = inst.dep
    cred, token = dep.creds["alice"], await csc.token("alice")
    hashes = fresh_hashes(1, "ssrf")
    sad = await csc.sad(token, cred, hashes=hashes)
    for uri in ("https://sa.example/cb", f"http://{CALLBACK_HOST}:{inst.callback_port + 1}/cb",
                f"http://127.0.0.1:{inst.callback_port}/cb",
                f"http://[::1]:{inst.callback_port}/", f"http://localhost:{inst.callback_port + 1}/cb",
                f"ftp://{CALLBACK_HOST}:{inst.callback_port}/"):
        status, err = await sign_async(csc, token, cred, sad, hashes, response_uri=uri)
        assert (status, err) == (400, {"error": "invalid_request",
                                       "error_description": "Invalid parameter response_uri"}), (uri, err)
    status, err = await sign_async(csc, token, cred, sad, hashes, validity_period=10**12)
    assert status == 400 and err["error_description"] == "Out of bounds parameter validity_period"
    status, body = await csc.sign(token, cred, sad, hashes, ECDSA_SHA256)
    assert status == 200, body  # nothing was spent


async def test_the_response_uri_is_notified_and_retried(csc, inst):
    dep = inst.dep
    async with Listener(CALLBACK_HOST, inst.callback_port, [500]) as listener:
        cred, token = dep.creds["alice"], await csc.token("alice")
        hashes = fresh_hashes(1, "notify")
        sad = await csc.sad(token, cred, hashes=hashes)
        status, body = await sign_async(csc, token, cred, sad, hashes,
                                        response_uri=f"http://{CALLBACK_HOST}:{inst.callback_port}/done?ref=42")
        assert status == 200, body
        rid = body["responseID"]
        first = await asyncio.wait_for(listener.hits.get(), 90)
        second = await asyncio.wait_for(listener.hits.get(), 90)
    assert first == ({"ref": "42"}, {"responseID": rid}, 500)
    assert second == ({"ref": "42"}, {"responseID": rid}, 204)
    status, result = await poll(csc, token, rid)  # notified after the result was stored
    assert status == 200, result
    await verify_all(csc, token, cred, hashes, result["signatures"])
    notified = await eventually(lambda: job_records(dep, rid, "notified"), "the notification's audit record")
    assert len(notified) == 1 and json.loads(notified[0].detail)["attempts"] == 2


class Listener:
    """An HTTP server on the instance's allowed callback port that records what it receives."""

    def __init__(self, host: str, port: int, answers: list[int]) -> None:
        self.host, self.port = host, port
        self.answers = iter(answers)
        self.hits: asyncio.Queue = asyncio.Queue()
        self.runner: web.AppRunner | None = None

    async def __aenter__(self) -> Listener:
        async def handle(request: web.Request) -> web.Response:
            status = next(self.answers, 204)
            await self.hits.put((dict(request.query), await request.json(), status))
            return web.Response(status=status)

        app = web.Application()
        app.router.add_post("/done", handle)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, self.host, self.port).start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        assert self.runner is not None
        await self.runner.cleanup()


async def test_a_listed_name_that_resolves_to_loopback_is_not_connected_to(csc, inst):
    """``localhost:PORT`` is on the list, but a loopback address only if listed as such (DNS rebinding)."""
    dep = inst.dep
    async with Listener("127.0.0.1", inst.callback_port, []) as listener:  # where localhost would connect
        cred, token = dep.creds["alice"], await csc.token("alice")
        hashes = fresh_hashes(1, "rebinding")
        sad = await csc.sad(token, cred, hashes=hashes)
        status, body = await sign_async(csc, token, cred, sad, hashes,
                                        response_uri=f"http://localhost:{inst.callback_port}/done")
        assert status == 200, body  # accepted: the host is listed
        rid = body["responseID"]

        async def notification_ended():
            return await job_records(dep, rid, "notified") + await job_records(dep, rid, "notify_failed")

        [ended] = await eventually(notification_ended, "the notification to end")
        assert listener.hits.empty()  # every attempt ended before connecting
    assert ended.outcome == "notify_failed" and json.loads(ended.detail)["attempts"] == 5
    status, result = await poll(csc, token, rid)
    assert status == 200, result


async def test_a_failed_job_answers_its_csc_error(csc, inst):
    dep = inst.dep
    cred, token = dep.creds["spare"], await csc.token("alice")
    hashes = fresh_hashes(1, "fails")
    sad = await csc.sad(token, cred, hashes=hashes)
    try:
        with inst.hold():
            status, body = await sign_async(csc, token, cred, sad, hashes)
            assert status == 200, body
            await execute(dep, update(credentials).where(credentials.c.id == cred.id).values(status="disabled"))
        rid = body["responseID"]
        status, err = await finished(csc, token, rid)
        assert (status, err) == (400, {"error": "invalid_request", "error_description":
                                       "The credential identified by credentialID is disabled"})
        assert await poll(csc, token, rid) == (status, err)
        assert len(await job_records(dep, rid, "failed")) == 1
        assert await job_records(dep, rid, "completed") == []
    finally:
        await execute(dep, update(credentials).where(credentials.c.id == cred.id).values(status="enabled"))


async def test_the_result_is_gone_after_the_validity_period(csc, inst):
    dep = inst.dep
    cred, token = dep.creds["alice"], await csc.token("alice")
    hashes = fresh_hashes(1, "expiry")
    sad = await csc.sad(token, cred, hashes=hashes)
    status, body = await sign_async(csc, token, cred, sad, hashes, validity_period=3000)
    assert status == 200, body
    rid = body["responseID"]
    status, result = await finished(csc, token, rid)
    assert status == 200, result

    async def gone():
        return await poll(csc, token, rid) == (400, UNKNOWN)

    await eventually(gone, "the result to expire")
    await eventually(lambda: job_records(dep, rid, "expired"), "the expiry's audit record")
    assert await job_row(dep, rid) is None
    assert len(await job_records(dep, rid, "expired")) == 1


async def test_a_restart_resumes_the_jobs_it_interrupted(csc, inst):
    dep = inst.dep
    cred, token = dep.creds["alice"], await csc.token("alice")
    hashes = fresh_hashes(1, "restart")
    sad = await csc.sad(token, cred, hashes=hashes)
    with inst.hold():
        rid, _ = await enqueue_claimed(csc, inst, token, cred, sad, hashes)
        dep.stop()  # SIGTERM: the worker gives its claim back
        row = await job_row(dep, rid)
        assert (row.status, row.attempts, row.claim_token) == ("pending", 0, None)
    dep.start(workers=2)
    status, result = await finished(csc, token, rid)
    assert status == 200, result
    await verify_all(csc, token, cred, hashes, result["signatures"])
    assert len(await job_records(dep, rid, "completed")) == 1


async def test_a_job_whose_worker_is_killed_completes_once_on_another(csc, inst):
    dep = inst.dep
    cred, token = dep.creds["alice"], await csc.token("alice")
    hashes = fresh_hashes(3, "kill")
    sad = await csc.sad(token, cred, num=3, hashes=hashes)
    try:
        with inst.hold():
            rid, killed = await enqueue_claimed(csc, inst, token, cred, sad, hashes)
            # a worker that dies before it listens stops the server (rssp.server); this one serves
            assert killed in dep.answered_pids()
            os.kill(killed, signal.SIGKILL)
            await eventually(lambda: gone_process(killed), "the killed worker to exit")
            await eventually(lambda: serving_alone(csc), "the other worker to take every connection")
        status, result = await finished(csc, token, rid)  # the other worker, once the lease has passed
        assert status == 200, result
        await verify_all(csc, token, cred, hashes, result["signatures"])
        row = await job_row(dep, rid)
        assert row.attempts >= 2 and not row.claimed_by.endswith(f":{killed}")
        assert len(await job_records(dep, rid, "completed")) == 1
        assert await poll(csc, token, rid) == (200, result)
    finally:
        dep.stop()
        dep.start(workers=2)


# ---------------------------------------------------------------------------- configuration and schema

@pytest.mark.parametrize("bad", [
    "max_validity_period_ms = 1000\ndefault_validity_period_ms = 2000", "lease_seconds = 0",
    'response_uri_hosts = ["https://cb.example/path"]', 'response_uri_private_networks = ["not a network"]',
    "callback_attempts = -1", "no_such_setting = 1",
])
def test_bad_async_settings_are_refused_at_start(tmp_path, bad):
    from rssp.config import ConfigError, load_config

    (tmp_path / "hsm-pin").write_text("1234\n")
    (tmp_path / "rssp.toml").write_text('[database]\nurl = "sqlite:///{dir}/rssp.db"\n'
                                        '[hsm]\nmodule = "x.so"\ntoken_label = "rssp"\npin_file = "hsm-pin"\n'
                                        f"[async]\n{bad}\n")
    with pytest.raises(ConfigError):
        load_config(tmp_path)


async def test_migration_7_adds_the_jobs_table_to_an_older_database(tmp_path):
    from sqlalchemy import delete, inspect, text

    from rssp.store import migrate
    from rssp.store.migrations import schema_version

    store = open_store(f"sqlite:///{tmp_path}/old.db")
    try:
        await migrate(store)

        def downgrade(conn):
            conn.execute(text("DROP TABLE jobs"))
            conn.execute(delete(schema_version).where(schema_version.c.version >= 7))

        await store.transaction(downgrade)
        version = await migrate(store)
        assert version >= 7
        assert "jobs" in await store.query(lambda conn: set(inspect(conn).get_table_names()))
        indexes = await store.query(lambda conn: {i["name"] for i in inspect(conn).get_indexes("jobs")})
        assert {"ix_jobs_claim", "ix_jobs_expires"} <= indexes
        assert await migrate(store) == version  # idempotent
    finally:
        await store.close()
