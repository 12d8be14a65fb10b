"""Shared pytest fixtures for the rssp suite.

Keep each group of fixtures in its own section below; add new sections rather than
growing existing ones.
"""

from __future__ import annotations

import pytest

try:  # tests/ as a package or as a plain rootdir-inserted directory
    from .pgcluster import PgCluster
except ImportError:
    from pgcluster import PgCluster


# ============================================================================ PostgreSQL
# One throwaway cluster per test session (tests/pgcluster.py); RSSP_TEST_PG_URL points the
# suite at an existing server instead. pg_cluster.start() returns the URL of database
# "rssp_test"; pg_cluster.create_database(name) gives a fresh database per test.

@pytest.fixture(scope="session")
def pg_cluster():
    cluster = PgCluster()
    cluster.start()
    try:
        yield cluster
    finally:
        cluster.stop()
