"""The throwaway PostgreSQL cluster works through SQLAlchemy's asyncio + asyncpg."""

from __future__ import annotations

from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine


async def test_pg_cluster_select_and_ddl(pg_cluster):
    url = pg_cluster.start()  # idempotent: returns the running cluster's URL
    assert url.startswith("postgresql+asyncpg://")

    engine = create_async_engine(url)
    try:
        async with engine.begin() as conn:
            assert (await conn.execute(text("select 1"))).scalar_one() == 1
            await conn.execute(text("create table pgcluster_probe (id int primary key, v text)"))
            await conn.execute(text("insert into pgcluster_probe values (1, 'x')"))
            assert (await conn.execute(text("select v from pgcluster_probe"))).scalar_one() == "x"
            await conn.execute(text("drop table pgcluster_probe"))
        async with engine.connect() as conn:
            exists = (await conn.execute(text("select to_regclass('pgcluster_probe')"))).scalar()
            assert exists is None
    finally:
        await engine.dispose()

    # a second, clean database on the same server
    url2 = pg_cluster.create_database("pgcluster_probe_db")
    assert url2.endswith("/pgcluster_probe_db")
    engine2 = create_async_engine(url2)
    try:
        async with engine2.connect() as conn:
            assert (await conn.execute(text("select current_database()"))).scalar_one() == "pgcluster_probe_db"
    finally:
        await engine2.dispose()
    pg_cluster.drop_database("pgcluster_probe_db")
