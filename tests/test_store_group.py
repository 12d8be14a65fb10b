"""Group commit on the SQLite store: transactions queued together commit together, and each
one's failure stays its own (rssp/store/group.py).

The SAD spend relies on this: under load many spends share one SQLite transaction, and a
refused spend (an exhausted SAD, a hash not authorized) must roll back only its own writes.
"""

from __future__ import annotations

import asyncio

import pytest
from sqlalchemy import Column, Integer, MetaData, String, Table, insert, select, update
from sqlalchemy.engine import Connection

from rssp.store.sqlite import SqliteStore

meta = MetaData()
counters = Table("counters", meta, Column("name", String(16), primary_key=True), Column("value", Integer))


class Refused(Exception):
    """A unit of work that decides, after writing, that it must not happen."""


@pytest.fixture
async def store(tmp_path):
    s = SqliteStore(f"sqlite:///{tmp_path}/group.db")
    await s.transaction(lambda conn: meta.create_all(conn))
    yield s
    await s.close()


def bump(name: str, fail: bool = False):
    def work(conn: Connection) -> int:
        conn.execute(update(counters).where(counters.c.name == name).values(value=counters.c.value + 1))
        value = conn.execute(select(counters.c.value).where(counters.c.name == name)).scalar_one()
        if fail:
            raise Refused(name)
        return value

    return work


async def test_concurrent_transactions_commit_and_fail_independently(store):
    await store.transaction(lambda conn: conn.execute(insert(counters), [{"name": "a", "value": 0},
                                                                         {"name": "b", "value": 0}]))
    works = [bump("a") for _ in range(30)] + [bump("b", fail=True) for _ in range(10)]
    results = await asyncio.gather(*(store.transaction(w) for w in works), return_exceptions=True)

    successes = [r for r in results if not isinstance(r, BaseException)]
    failures = [r for r in results if isinstance(r, BaseException)]
    assert sorted(successes) == list(range(1, 31))  # each saw the writes committed before it
    assert len(failures) == 10 and all(isinstance(f, Refused) for f in failures)
    rows = dict(await store.query(lambda conn: conn.execute(select(counters)).all()))
    assert rows == {"a": 30, "b": 0}  # the refused units left nothing behind


async def test_a_lone_failing_transaction_rolls_back(store):
    await store.transaction(lambda conn: conn.execute(insert(counters).values(name="c", value=0)))
    with pytest.raises(Refused):
        await store.transaction(bump("c", fail=True))
    assert await store.query(lambda conn: conn.execute(select(counters.c.value)).scalar_one()) == 0


async def test_concurrent_reads_each_get_their_own_result_or_error(store):
    await store.transaction(lambda conn: conn.execute(insert(counters).values(name="d", value=7)))

    def read(conn: Connection) -> int:
        return conn.execute(select(counters.c.value).where(counters.c.name == "d")).scalar_one()

    def broken(conn: Connection) -> int:
        return conn.execute(select(counters.c.value).where(counters.c.name == "missing")).scalar_one()

    results = await asyncio.gather(*(store.query(read if i % 3 else broken) for i in range(12)),
                                   return_exceptions=True)
    assert [r for r in results if not isinstance(r, BaseException)] == [7] * 8
    assert sum(isinstance(r, BaseException) for r in results) == 4
