"""A burst of unauthenticated requests cannot freeze the service (#20, finding 2).

Twenty parallel ``auth/login`` used to stall every request for a minute: ``store.read()`` took
a pooled SQLite connection on the store thread and returned it through a call queued behind
the one waiting for it. Now reads hold nothing between statements, unauthenticated login
checks are bounded per process (argon2 included, on a pool of their own), and management
client secrets are not argon2 hashes at all. These tests run on their own deployments: a burst
of failed logins from 127.0.0.1 would count toward the address throttle of the shared one.
"""

from __future__ import annotations

import asyncio
import os
import secrets
import signal
import time

import aiohttp
import pytest

from client import CSC, ECDSA_SHA256, digest
from deployment import make_deployment_minimal
from rssp.store import migrate, open_store
from rssp.store.schema import users


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def burst_dep(request, tmp_path_factory):
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"rssp_burst_{secrets.token_hex(4)}")
    # at the default argon2 cost: what a burst of logins costs is what the service must stand up to
    dep = make_deployment_minimal(tmp_path_factory.mktemp(f"burst-{request.param}") / "instance", url,
                                  test_argon2=False)
    dep.start(workers=2)
    yield dep
    dep.stop()


async def _login(http: aiohttp.ClientSession, dep, user: str, password: str, path: str = "csc/v2/auth/login"):
    headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
    async with http.post(f"{dep.base}/{path}", json={}, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), resp.headers.get("Retry-After")


async def test_a_signer_signs_while_a_login_burst_is_served(http, burst_dep):
    dep = burst_dep
    csc = CSC(http, dep)
    token = await csc.token("signer")
    cred = dep.creds["signer"]
    done: list[str] = []

    async def one_login(i: int):
        answer = await _login(http, dep, f"intruder-{i}-{secrets.token_hex(4)}", "guess")
        done.append("burst")
        return answer

    async def probe():
        sad = await csc.sad(token, cred, hashes=[digest(b"during the burst")])
        status, body = await csc.sign(token, cred, sad, [digest(b"during the burst")], ECDSA_SHA256)
        done.append("probe")
        return status, body

    burst = [asyncio.create_task(one_login(i)) for i in range(100)]
    await asyncio.sleep(0)  # the burst is on the wire first
    status, body = await asyncio.wait_for(probe(), 60)
    answers = await asyncio.wait_for(asyncio.gather(*burst), 60)
    assert status == 200, body
    assert done.index("probe") < len(done) - 1, "the signer waited for the whole burst"
    kinds = {(s, b["error"]) for s, b, _ in answers}
    assert kinds <= {(400, "authentication_error"), (429, "temporarily_unavailable")}, kinds
    # the work a process takes on at once is bounded: the rest of the burst is refused at once
    assert (429, "temporarily_unavailable") in kinds
    assert all(retry == "1" for s, b, retry in answers if s == 429)
    # and the service is whole afterwards
    assert (await csc.call("credentials/list", {}, token))[0] == 200


async def test_concurrent_wrong_passwords_cannot_exceed_the_limit(http, burst_dep):
    """Count before checking: of 30 concurrent guesses, at most five are checked, then the right one is refused."""
    dep = burst_dep
    name = f"victim-{secrets.token_hex(4)}"
    dep.add_user(name, "the-right-password")
    answers = await asyncio.gather(*(_login(http, dep, name, f"guess-{i}") for i in range(30)))
    checked = [a for a in answers if a[0] == 400]
    assert 1 <= len(checked) <= 5
    assert all((s, b["error"]) == (429, "temporarily_unavailable") for s, b, _ in answers if s != 400)
    status, body, _ = await _login(http, dep, name, "the-right-password")
    assert (status, body["error"]) == (429, "temporarily_unavailable")


async def test_manages_login_is_throttled_per_client(http, burst_dep):
    dep = burst_dep
    client_id, secret = dep.manage_clients["local"]
    for _ in range(5):
        status, body, _ = await _login(http, dep, client_id, "not-the-secret", "csc/v2/manages/login")
        assert (status, body["error"]) == (400, "authentication_error")
    status, body, retry = await _login(http, dep, client_id, secret, "csc/v2/manages/login")
    assert (status, body["error"]) == (429, "temporarily_unavailable") and int(retry) >= 1


async def test_many_concurrent_store_reads_and_writes_never_wait_for_each_other(tmp_path):
    """More readers than any pool holds, each pausing between statements, beside writers."""
    store = open_store(f"sqlite:///{tmp_path}/reads.db")
    await migrate(store)

    async def reader(i: int) -> int:
        async with store.read() as conn:
            first = (await conn.execute(users.select())).all()
            await asyncio.sleep(0.01)
            second = (await conn.execute(users.select().where(users.c.username == f"u{i}"))).all()
        return len(first) + len(second)

    async def writer(i: int) -> None:
        async with store.write() as conn:
            await conn.execute(users.insert().values(id=f"id{i}", username=f"w{i}", password_hash="x",
                                                     status="active", created_at=time.time()))
            await asyncio.sleep(0.01)

    try:
        await asyncio.wait_for(asyncio.gather(*(reader(i) for i in range(100)), *(writer(i) for i in range(10))), 20)
        async with store.read() as conn:
            assert len((await conn.execute(users.select())).all()) == 10
    finally:
        await store.close()


async def test_the_server_stops_on_sigterm_during_a_burst(http, tmp_path):
    dep = make_deployment_minimal(tmp_path / "instance", None, test_argon2=False)  # a burst that takes time
    dep.start(workers=2)
    burst = [asyncio.create_task(_login(http, dep, f"x-{i}", "guess")) for i in range(100)]
    await asyncio.sleep(0.05)
    os.killpg(dep.proc.pid, signal.SIGTERM)
    code = await asyncio.get_running_loop().run_in_executor(None, dep.proc.wait, 60)
    await asyncio.gather(*burst, return_exceptions=True)
    dep.proc = None
    assert code == 0
