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


# ============================================================================ rssp deployments
# A deployment per database backend, made once per session through the CLI and served by
# `rssp serve --workers 2`; tests that take `dep` run against SQLite and PostgreSQL.

import sys
from pathlib import Path

import aiohttp
import pytest_asyncio

sys.path.insert(0, str(Path(__file__).parent))

from deployment import Deployment, make_deployment  # noqa: E402


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def dep(request, tmp_path_factory) -> Deployment:
    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database(f"rssp_{request.param}")
    deployment = make_deployment(tmp_path_factory.mktemp(request.param) / "instance", url)
    deployment.start(workers=2)
    yield deployment
    deployment.stop()


@pytest_asyncio.fixture(scope="session")
async def http() -> aiohttp.ClientSession:
    async with aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=120)) as session:
        yield session


@pytest.fixture
def csc(http, dep):
    from client import CSC

    return CSC(http, dep)


# ============================================================================ factor deployments (#14)
# An instance per database backend with an SMTP relay (aiosmtpd, STARTTLS + AUTH) and an OpenID
# Provider (oidc-provider in node) of its own, on loopback (tests/factors_helpers.py).

@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def fdep(request, tmp_path_factory):
    from factors_helpers import factor_deployment

    url = None
    if request.param == "postgresql":
        url = request.getfixturevalue("pg_cluster").create_database("rssp_factors")
    deployment = factor_deployment(tmp_path_factory.mktemp(f"factors-{request.param}") / "instance", url)
    yield deployment
    deployment.dep.stop()
    deployment.op.stop()
    deployment.smtp.stop()


@pytest_asyncio.fixture(scope="session")
async def chromium():
    """Debian's chromium, headless, driven by Playwright (tests/factors_browser.py; never a download)."""
    from factors_browser import CHROMIUM, CHROMIUM_ARGS
    from playwright.async_api import async_playwright

    async with async_playwright() as pw:
        browser = await pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, headless=True)
        try:
            yield browser
        finally:
            await browser.close()


@pytest_asyncio.fixture(scope="session")
async def callback():
    """A signature application's redirect URI on loopback, recording what it receives."""
    from oauth_helpers import Callback

    cb = await Callback().start()
    try:
        yield cb
    finally:
        await cb.stop()
