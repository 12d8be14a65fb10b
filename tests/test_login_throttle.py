"""Password logins are throttled per username and per client address (rssp/auth/throttle.py).

Over the running server: five wrong passwords block the username, even for the right one,
without revealing whether the account exists; other users keep logging in; the block ends
and a success clears the count. The address threshold (100 by default, so the suite's own
logins from 127.0.0.1 never reach it) is checked on the throttle itself, over a real SQLite
database.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import time

import aiohttp
import pytest
from sqlalchemy import update

from rssp.audit import load_audit_key, typed_actor
from rssp.auth.throttle import LoginThrottle, LoginThrottled, ThrottlePolicy
from rssp.store import migrate, open_store
from rssp.store.schema import login_throttle

_names = itertools.count()


async def login(http: aiohttp.ClientSession, dep, user: str, password: str) -> tuple[int, dict, dict]:
    headers = {"Authorization": aiohttp.encode_basic_auth(user, password)}
    async with http.post(f"{dep.base}/csc/v2/auth/login", json={}, headers=headers) as resp:
        return resp.status, await resp.json(content_type=None), dict(resp.headers)


def fresh_user(dep) -> str:
    name = f"throttled-{next(_names)}-{time.monotonic_ns()}"
    dep.add_user(name, "right-password")
    return name


async def unblock(dep, username: str) -> None:
    """Move the username's last failure back past the longest block (instead of waiting)."""
    store = open_store(dep.db_url)
    try:
        async with store.write() as conn:
            key = typed_actor(load_audit_key(dep.directory), "user:" + username)
            await conn.execute(update(login_throttle).where(login_throttle.c.key == key)
                               .values(last_failure=time.time() - 3600))
    finally:
        await store.close()


async def test_five_wrong_passwords_block_the_username_even_for_the_right_one(http, dep):
    user = fresh_user(dep)
    for _ in range(5):
        status, body, _ = await login(http, dep, user, "wrong")
        assert (status, body["error"]) == (400, "authentication_error")
    status, body, headers = await login(http, dep, user, "right-password")
    assert (status, body["error"]) == (429, "temporarily_unavailable")
    assert 1 <= int(headers["Retry-After"]) <= 60
    assert (await login(http, dep, "alice", dep.passwords["alice"]))[0] == 200  # others unaffected

    records = dep.rssp_json("audit", "list", str(dep.directory), "--limit", "2000")
    typed = typed_actor(load_audit_key(dep.directory), user)  # a failed login's actor: the typed name, keyed-hashed
    mine = [r for r in records if r["action"] == "auth.login" and r["actor"] == typed]
    assert {r["outcome"] for r in mine} == {"failed", "throttled"}
    assert "right-password" not in json.dumps(records) and "wrong" not in json.dumps(mine)


async def test_an_unknown_username_is_throttled_the_same_way(http, dep):
    ghost = f"nobody-{time.monotonic_ns()}"
    answers = [(await login(http, dep, ghost, "guess"))[:2] for _ in range(6)]
    assert [(s, b["error"]) for s, b in answers] == ([(400, "authentication_error")] * 5
                                                     + [(429, "temporarily_unavailable")])


async def test_the_block_ends_and_a_success_clears_the_count(http, dep):
    user = fresh_user(dep)
    for _ in range(5):
        await login(http, dep, user, "wrong")
    assert (await login(http, dep, user, "right-password"))[0] == 429
    await unblock(dep, user)
    assert (await login(http, dep, user, "right-password"))[0] == 200
    for _ in range(4):  # the success started the count over: four more failures do not block
        assert (await login(http, dep, user, "wrong"))[0] == 400
    assert (await login(http, dep, user, "right-password"))[0] == 200


@pytest.fixture
async def throttle(tmp_path):
    store = open_store(f"sqlite:///{tmp_path}/throttle.db")
    await migrate(store)
    yield LoginThrottle(store, ThrottlePolicy(user_failures=5, address_failures=3, block_seconds=60), tmp_path)
    await store.close()


async def test_failures_from_one_address_block_it_across_usernames(throttle):
    for name in ("u1", "u2", "u3"):
        await throttle.begin("user", name, "192.0.2.7")  # each attempt is counted before it is checked
    with pytest.raises(LoginThrottled):
        await throttle.begin("user", "u4", "192.0.2.7")  # a username never tried before: the address is blocked
    await throttle.begin("user", "u4", "192.0.2.8")  # another address is not
    await throttle.succeeded("user", "u3", "192.0.2.7")  # a success takes back its own attempt, no more
    await throttle.begin("user", "u5", "192.0.2.7")
    with pytest.raises(LoginThrottled):
        await throttle.begin("user", "u6", "192.0.2.7")


async def test_the_delay_doubles_with_each_failure_past_the_threshold(throttle):
    for _ in range(5):
        await throttle.begin("user", "v", None)
    with pytest.raises(LoginThrottled) as first:
        await throttle.begin("user", "v", None)
    async with throttle.store.write() as conn:  # the first block has passed
        await conn.execute(update(login_throttle).values(last_failure=time.time() - 61))
    await throttle.begin("user", "v", None)  # allowed once more, and counted
    with pytest.raises(LoginThrottled) as second:
        await throttle.begin("user", "v", None)
    assert first.value.retry_after <= 60 < second.value.retry_after <= 120


async def test_concurrent_attempts_are_counted_before_any_is_checked(throttle):
    """Fifty attempts at once for one name: exactly five go ahead, whatever the interleaving."""
    outcomes = await asyncio.gather(*(throttle.begin("user", "w", None) for _ in range(50)), return_exceptions=True)
    assert sum(o is None for o in outcomes) == 5
    assert all(isinstance(o, LoginThrottled) for o in outcomes if o is not None)
