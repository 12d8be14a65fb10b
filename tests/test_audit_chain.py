"""The tamper-evident audit trail (#12): hash chains per writer, HSM-MACed checkpoints, ``rssp audit verify``.

One trail per backend, written by a real ``rssp serve --workers 2`` deployment driven by
concurrent single-hash signHash calls from several users (10,000 calls, one audit record each),
then stopped cleanly (its last checkpoint seals every chain). Each tampering test edits the
database directly as someone with database access but no HSM would, runs ``rssp audit verify``
(exit status 1, the first bad record named), puts the database back and checks the trail
verifies again, so the tests share the trail and each shows that its own change was found.
Tests that change the trail for good (a crash, the migration of an old trail) come last.
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import os
import signal
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from dataclasses import dataclass
from functools import partial
from typing import Any

import aiohttp
import pytest
import pytest_asyncio
from sqlalchemy import delete, insert, select, text, update

from client import CSC, ECDSA_SHA256, digest
from deployment import Deployment, _new_deployment
from rssp.audit import record, write_record
from rssp.audit_chain import MAC_KEY_LABEL, canonical, link
from rssp.audit_seal import AuditSealer
from rssp.config import load_config
from rssp.hsm import Hsm
from rssp.hsm.types import KeyNotFound
from rssp.store import Store, open_store
from rssp.store.migrations import MIGRATIONS
from rssp.store.schema import audit, audit_chains, audit_checkpoints

USERS, TASKS, CALLS = 4, 16, 10_000


@dataclass
class Trail:
    dep: Deployment
    signed: int  # signHash calls that succeeded
    key_after_init: bool  # the HSM had the audit MAC key right after `rssp init`


def open_hsm(dep: Deployment) -> Hsm:
    config = load_config(dep.directory)
    return Hsm(config.hsm.module, config.hsm.token_label, config.hsm.pin, config.hsm.softhsm2_conf)


async def has_audit_key(dep: Deployment) -> bool:
    async with open_hsm(dep) as hsm:
        try:
            await hsm.mac(MAC_KEY_LABEL, b"probe")
        except KeyNotFound:
            return False
    return True


@asynccontextmanager
async def database(dep: Deployment) -> AsyncIterator[Store]:
    store = open_store(dep.db_url)
    try:
        yield store
    finally:
        await store.close()


async def run(dep: Deployment, *statements: Any) -> None:
    async with database(dep) as store, store.write() as conn:
        for statement in statements:
            await conn.execute(statement)


async def fetch(dep: Deployment, query: Any) -> list[dict[str, Any]]:
    async with database(dep) as store, store.read() as conn:
        return [dict(row._mapping) for row in (await conn.execute(query)).all()]


def verify(dep: Deployment) -> tuple[int, dict[str, Any]]:
    done = dep.rssp("audit", "verify", str(dep.directory), "--json", check=False)
    assert done.stdout, done.stderr
    return done.returncode, json.loads(done.stdout)


def assert_intact(dep: Deployment) -> dict[str, Any]:
    code, report = verify(dep)
    assert (code, report["intact"], report["problems"]) == (0, True, []), report
    return report


async def sign_load(dep: Deployment, users: list[str], calls: int) -> int:
    """``calls`` single-hash signHash calls from TASKS concurrent clients; how many succeeded."""
    per_task = calls // TASKS
    async with aiohttp.ClientSession(connector=aiohttp.TCPConnector(limit=TASKS),
                                     timeout=aiohttp.ClientTimeout(total=600)) as session:
        csc = CSC(session, dep)
        tokens = {user: await csc.token(user) for user in users}

        async def client(i: int) -> int:
            user = users[i % len(users)]
            cred = dep.creds[user]
            sad = await csc.sad(tokens[user], cred, num=per_task)
            for n in range(per_task):
                status, body = await csc.sign(tokens[user], cred, sad, [digest(f"{i}/{n}".encode())], ECDSA_SHA256)
                assert status == 200, body
            return per_task

        return sum(await asyncio.gather(*(client(i) for i in range(TASKS))))


@pytest_asyncio.fixture(scope="module", params=["sqlite", "postgresql"], loop_scope="session")
async def trail(request, tmp_path_factory) -> AsyncIterator[Trail]:
    url = request.getfixturevalue("pg_cluster").create_database("rssp_audit") if request.param == "postgresql" else None
    dep = _new_deployment(tmp_path_factory.mktemp(f"audit-{request.param}") / "instance", url)
    key_after_init = await has_audit_key(dep)
    users = [f"signer{n}" for n in range(USERS)]
    for user in users:
        dep.add_user(user, f"{user}-password")
        dep.add_credential(user, user, "ec-p256", multisign=1000)
    dep.start(workers=2)
    try:
        signed = await sign_load(dep, users, CALLS)
    finally:
        dep.stop()  # a clean stop: each worker's last checkpoint seals and closes its chains
    yield Trail(dep, signed, key_after_init)
    dep.stop()


# ------------------------------------------------------------------------------ an untouched trail


async def test_init_creates_the_audit_key(trail):
    assert trail.key_after_init


async def test_ten_thousand_records_from_two_workers_verify(trail):
    report = assert_intact(trail.dep)
    assert report["records"] >= CALLS and report["unsealed"] == 0
    chains = await fetch(trail.dep, select(audit.c.chain).where(audit.c.action == "signature.sign").distinct())
    writers = {row["chain"].split(".")[0] for row in chains}
    assert len(writers) == 2 and all(w.startswith("k") for w in writers)  # both workers wrote, under the HSM key


async def test_sign_hash_writes_exactly_one_record_per_call(trail):
    creds = [c.id for c in trail.dep.creds.values()]
    rows = await fetch(trail.dep, select(audit.c.outcome).where(audit.c.action == "signature.sign",
                                                                audit.c.target.in_(creds)))
    assert trail.signed == CALLS
    assert [r["outcome"] for r in rows] == ["authorized"] * CALLS


async def test_a_clean_stop_seals_and_closes_the_chains_of_both_workers(trail):
    chains = await fetch(trail.dep, select(audit_chains))
    served = [c for c in chains if c["chain_id"].startswith("k")]
    assert served and all(c["final_seq"] == c["sealed_seq"] and c["final_seq"] for c in served)


# ------------------------------------------------------------------------------ tampering


async def some_record(dep: Deployment) -> dict[str, Any]:
    """A sealed signature record in the middle of a busy chain, and the ones around it."""
    signs = await fetch(dep, select(audit).where(audit.c.action == "signature.sign").order_by(audit.c.id))
    return signs[len(signs) // 2]


async def chain_rows(dep: Deployment, chain: str) -> list[dict[str, Any]]:
    return await fetch(dep, select(audit).where(audit.c.chain == chain).order_by(audit.c.seq))


def neighbours(rows: list[dict[str, Any]], target: dict[str, Any]) -> tuple[dict[str, Any], dict[str, Any]]:
    i = next(i for i, row in enumerate(rows) if row["id"] == target["id"])
    return rows[i - 1], rows[i + 1]


def first_problem(dep: Deployment) -> dict[str, Any]:
    code, report = verify(dep)
    assert code == 1 and not report["intact"], report
    return report["problems"][0]


EDITS: dict[str, Callable[[dict[str, Any]], Any]] = {
    "actor": lambda r: "someone-else",
    "action": lambda r: "signature.none",
    "target": lambda r: "another-credential",
    "outcome": lambda r: "refused",
    "client_ip": lambda r: "192.0.2.7",
    "detail": lambda r: '{"hashAlgo":"2.16.840.1.101.3.4.2.1","hashes":[]}',
    "ts": lambda r: r["ts"] + 3600,
    "hash": lambda r: hashlib.sha256(b"forged").hexdigest(),
}


@pytest.mark.parametrize("column", sorted(EDITS))
async def test_an_edited_record_is_named(trail, column):
    dep, target = trail.dep, await some_record(trail.dep)
    await run(dep, update(audit).where(audit.c.id == target["id"]).values({column: EDITS[column](target)}))
    try:
        problem = first_problem(dep)
        assert (problem["kind"], problem["recordID"]) == ("edited", target["id"]), problem
    finally:
        await run(dep, update(audit).where(audit.c.id == target["id"]).values({column: target[column]}))
    assert_intact(dep)


async def test_a_deleted_record_is_named(trail):
    dep, target = trail.dep, await some_record(trail.dep)
    _before, after = neighbours(await chain_rows(dep, target["chain"]), target)
    await run(dep, delete(audit).where(audit.c.id == target["id"]))
    try:
        problem = first_problem(dep)
        assert (problem["kind"], problem["recordID"]) == ("deleted", after["id"]), problem
        assert f"seq {target['seq']} of its chain" in problem["text"]
    finally:
        await run(dep, insert(audit).values(target))
    assert_intact(dep)


async def swap(dep: Deployment, column: str, a: dict[str, Any], b: dict[str, Any]) -> None:
    """Exchange one column between two records (through a value no record has: the columns are unique)."""
    await run(dep, update(audit).where(audit.c.id == a["id"]).values({column: -1}),
              update(audit).where(audit.c[column] == b[column]).values({column: a[column]}),
              update(audit).where(audit.c[column] == -1).values({column: b[column]}))


@pytest.mark.parametrize("column", ["id", "seq"])
async def test_reordered_records_are_named(trail, column):
    """Two neighbours of a chain swap places: by their ids (storage order) or their sequence numbers."""
    dep, target = trail.dep, await some_record(trail.dep)
    _before, after = neighbours(await chain_rows(dep, target["chain"]), target)
    if column == "seq":  # the ids must stay apart from the other chains' records: swap within the chain
        await run(dep, update(audit).where(audit.c.id == target["id"]).values(seq=-1),
                  update(audit).where(audit.c.id == after["id"]).values(seq=target["seq"]),
                  update(audit).where(audit.c.id == target["id"]).values(seq=after["seq"]))
    else:
        await swap(dep, "id", target, after)
    try:
        problem = first_problem(dep)
        # Either way the record now first in its chain's order, or first by id, is named.
        expected = {"id": ("reordered", target["id"]), "seq": ("edited", after["id"])}[column]
        assert (problem["kind"], problem["recordID"]) == expected, problem
    finally:
        if column == "seq":
            await run(dep, update(audit).where(audit.c.id == target["id"]).values(seq=-1),
                      update(audit).where(audit.c.id == after["id"]).values(seq=after["seq"]),
                      update(audit).where(audit.c.id == target["id"]).values(seq=target["seq"]))
        else:
            await swap(dep, "id", {**target, "id": after["id"]}, {**after, "id": target["id"]})
    assert_intact(dep)


async def insert_returning_id(dep: Deployment, values: dict[str, Any]) -> int:
    async with database(dep) as store, store.write() as conn:
        return int((await conn.execute(insert(audit).values(values).returning(audit.c.id))).scalar())


def forged(chain: str, seq: int, previous_hash: str, fields: dict[str, Any]) -> dict[str, Any]:
    """A record as someone without the writer key would chain it: plain SHA-256, right position."""
    digest_ = link(None, bytes.fromhex(previous_hash), canonical(chain, seq, fields))
    return {**fields, "chain": chain, "seq": seq, "hash": digest_.hex()}


FAKE = {"ts": 1.0e9, "actor": "someone", "action": "signature.sign", "target": "cred", "outcome": "authorized",
        "client_ip": None, "detail": None}


async def test_an_inserted_record_outside_any_chain_is_named(trail):
    dep = trail.dep
    new_id = await insert_returning_id(dep, FAKE)
    try:
        problem = first_problem(dep)
        assert (problem["kind"], problem["recordID"]) == ("inserted", new_id), problem
    finally:
        await run(dep, delete(audit).where(audit.c.id == new_id))
    assert_intact(dep)


async def test_a_record_inserted_inside_a_chain_is_named(trail):
    """The records after it renumbered to make room, the new one chained like the real ones (without the key)."""
    dep, target = trail.dep, await some_record(trail.dep)
    chain, seq = target["chain"], target["seq"]
    before, _after = neighbours(await chain_rows(dep, chain), target)
    shift = audit.c.chain == chain
    await run(dep, update(audit).where(shift, audit.c.seq >= seq).values(seq=-(audit.c.seq + 1)),
              update(audit).where(shift, audit.c.seq < 0).values(seq=-audit.c.seq))
    new_id = await insert_returning_id(dep, forged(chain, seq, before["hash"], FAKE))
    try:
        problem = first_problem(dep)
        assert (problem["kind"], problem["recordID"]) == ("edited", new_id), problem  # its hash is not the writer's
    finally:
        await run(dep, delete(audit).where(audit.c.id == new_id),
                  update(audit).where(shift, audit.c.seq > seq).values(seq=-(audit.c.seq - 1)),
                  update(audit).where(shift, audit.c.seq < 0).values(seq=-audit.c.seq))
    assert_intact(dep)


async def test_a_record_appended_to_a_chain_is_named(trail):
    dep, target = trail.dep, await some_record(trail.dep)
    last = (await chain_rows(dep, target["chain"]))[-1]
    new_id = await insert_returning_id(dep, forged(target["chain"], last["seq"] + 1, last["hash"], FAKE))
    try:
        code, report = verify(dep)
        assert code == 1
        named = {(p["kind"], p["recordID"]) for p in report["problems"]}
        assert report["problems"][0]["recordID"] == new_id
        assert {("edited", new_id), ("inserted", new_id)} <= named  # not the writer's hash; after its chain closed
    finally:
        await run(dep, delete(audit).where(audit.c.id == new_id))
    assert_intact(dep)


async def test_tail_truncation_is_detected(trail):
    """The newest records of a chain deleted: the checkpoint that sealed its head says what is missing."""
    dep, target = trail.dep, await some_record(trail.dep)
    rows = await chain_rows(dep, target["chain"])
    tail = rows[-3:]
    await run(dep, delete(audit).where(audit.c.id.in_([r["id"] for r in tail])))
    try:
        problem = first_problem(dep)
        assert (problem["kind"], problem["chain"], problem["recordID"]) == ("deleted", target["chain"], rows[-4]["id"])
        assert f"seq {tail[0]['seq']}..{tail[-1]['seq']}" in problem["text"], problem
    finally:
        await run(dep, *(insert(audit).values(r) for r in tail))
    assert_intact(dep)


async def test_a_whole_chain_deleted_is_detected(trail):
    dep = trail.dep
    cli = (await fetch(dep, select(audit).where(audit.c.action == "user.add").order_by(audit.c.id)))[0]
    rows = await chain_rows(dep, cli["chain"])
    registry = await fetch(dep, select(audit_chains).where(audit_chains.c.chain_id == cli["chain"]))
    await run(dep, delete(audit).where(audit.c.chain == cli["chain"]),
              delete(audit_chains).where(audit_chains.c.chain_id == cli["chain"]))
    try:
        problem = first_problem(dep)
        assert (problem["kind"], problem["chain"]) == ("deleted", cli["chain"]), problem
    finally:
        await run(dep, *(insert(audit).values(r) for r in rows), *(insert(audit_chains).values(r) for r in registry))
    assert_intact(dep)


async def test_an_edited_or_deleted_checkpoint_is_detected(trail):
    dep = trail.dep
    checkpoints = await fetch(dep, select(audit_checkpoints).order_by(audit_checkpoints.c.seq))
    assert len(checkpoints) >= 2  # each worker's start and its last one at least
    first = checkpoints[0]
    edited = first["body"].replace('"ts":', '"ts":1', 1)
    await run(dep, update(audit_checkpoints).where(audit_checkpoints.c.seq == 1).values(body=edited))
    try:
        assert "#1: its MAC does not verify" in first_problem(dep)["text"]
    finally:
        await run(dep, update(audit_checkpoints).where(audit_checkpoints.c.seq == 1).values(body=first["body"]))
    await run(dep, delete(audit_checkpoints).where(audit_checkpoints.c.seq == 1))
    try:
        assert "checkpoint(s) #1..#1 deleted" in first_problem(dep)["text"]
    finally:
        await run(dep, insert(audit_checkpoints).values(first))
    assert_intact(dep)


# ------------------------------------------------------------------------------ writing


async def test_rolled_back_units_leave_no_gap_in_the_chain(trail):
    """Records written in units that roll back (savepoints of a grouped SQLite transaction, whole
    PostgreSQL transactions) are gone without a trace, and the next record links to the last kept one."""
    dep = trail.dep
    store = open_store(dep.db_url)
    hsm = open_hsm(dep)
    await hsm.start()
    sealer = AuditSealer(store, hsm, None)
    await sealer.start()

    def unit(n: int, conn: Any) -> None:
        write_record(conn, actor="test", action="test.unit", outcome=f"unit {n}")
        if n % 2:
            raise ValueError("this unit rolls back")

    try:
        done = await asyncio.gather(*(store.transaction(partial(unit, n)) for n in range(40)), return_exceptions=True)
        assert [isinstance(d, ValueError) for d in done] == [bool(n % 2) for n in range(40)]
        with pytest.raises(ValueError):
            async with store.write() as conn:
                await record(conn, actor="test", action="test.unit", outcome="write rolled back")
                raise ValueError("rolls back")
        async with store.write() as conn:
            await record(conn, actor="test", action="test.unit", outcome="write kept")
    finally:
        await sealer.stop()
        await hsm.close()
        await store.close()
    kept = await fetch(dep, select(audit.c.outcome).where(audit.c.action == "test.unit"))
    assert sorted(r["outcome"] for r in kept) == sorted([f"unit {n}" for n in range(0, 40, 2)] + ["write kept"])
    assert assert_intact(dep)["unsealed"] == 0  # the stop sealed them


async def test_records_after_the_last_checkpoint_are_not_yet_sealed(trail):
    dep = trail.dep
    store = open_store(dep.db_url)  # a writer without the HSM: chained, but nothing seals it yet
    try:
        async with store.write() as conn:
            await record(conn, actor="test", action="test.late", outcome="ok")
    finally:
        await store.close()
    report = assert_intact(dep)
    assert report["unsealed"] == 1 and report["oldestUnsealed"]


async def test_a_crash_before_the_checkpoint_is_sealed_at_the_next_start(trail):
    dep = trail.dep
    dep.start(workers=2)
    assert await sign_load(dep, [f"signer{n}" for n in range(USERS)], TASKS * 4) == TASKS * 4
    os.killpg(dep.proc.pid, signal.SIGKILL)  # no clean stop: no last checkpoint
    dep.proc.wait()
    dep.proc = None
    dep.start(workers=2)  # the start seals what the killed workers left
    dep.stop()
    report = assert_intact(dep)
    assert report["unsealed"] == 0
    open_chains = await fetch(dep, select(audit_chains).where(audit_chains.c.final_seq.is_(None),
                                                              audit_chains.c.chain_id.like("k%")))
    assert open_chains and all(c["sealed_seq"] > 0 for c in open_chains)  # the killed workers' chains


async def test_records_from_before_chaining_become_the_sealed_genesis_chain(trail):
    """A trail written before this change (no chain columns set, no checkpoints) is chained at
    migration and sealed by the server's first checkpoint; edits to it are then found."""
    dep = trail.dep
    await run(dep, update(audit).values(chain=None, seq=None, hash=None), delete(audit_checkpoints),
              delete(audit_chains))
    step = next(n for n, fn in MIGRATIONS if fn.__name__.endswith("_audit_chain"))
    await run(dep, text(f"DELETE FROM schema_version WHERE version >= {step}"))  # later steps are idempotent
    total = len(await fetch(dep, select(audit.c.id)))
    report = assert_intact(dep)  # verify migrates first: every record chained, none sealed yet
    assert (report["records"], report["unsealed"], report["chains"]) == (total, total, 1)
    dep.start(workers=2)
    dep.stop()
    assert assert_intact(dep)["unsealed"] == 0
    target = (await fetch(dep, select(audit).where(audit.c.chain == "genesis").order_by(audit.c.seq)))[total // 2]
    await run(dep, update(audit).where(audit.c.id == target["id"]).values(outcome="refused"))
    assert first_problem(dep)["recordID"] == target["id"]
