"""Shared pytest fixtures for the rssp suite.

Keep each group of fixtures in its own section below; add new sections rather than
growing existing ones.
"""

from __future__ import annotations

import os
import sys
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import aiohttp
import pytest
import pytest_asyncio

try:  # tests/ as a package or as a plain rootdir-inserted directory
    from .pgcluster import PgCluster  # type: ignore[import-not-found]  # mypy reads tests/ as a plain directory
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

sys.path.insert(0, str(Path(__file__).parent))

from client import TOTP_STEPS_AHEAD  # noqa: E402
from deployment import Deployment, make_deployment  # noqa: E402

# TEST-ONLY: every server the suite starts (its environment is this one) accepts TOTP steps ahead of
# the clock, so that no test waits 30 s for a fresh one (rssp.sam.totp_lead; docs/configuration.md).
os.environ["RSSP_TEST_TOTP_STEPS_AHEAD"] = str(TOTP_STEPS_AHEAD)


class Kept:
    """Session resources made once per backend and kept until the session ends.

    pytest tears a parametrized session fixture down whenever the next test needs its other
    parameter. Run file by file (scripts/test.sh: pytest-xdist ``--dist loadfile``) that is at
    almost every file, so each deployment would be rebuilt (its PostgreSQL database made again)
    a dozen times; here the first one made serves every later file of the same process.
    """

    def __init__(self) -> None:
        self.made: dict[str, Any] = {}
        self.stops: list[Callable[[], None]] = []

    def get(self, key: str, make: Callable[[], Any], stop: Callable[[Any], None]) -> Any:
        if key not in self.made:
            self.made[key] = made = make()
            self.stops.append(lambda: stop(made))
        return self.made[key]

    def close(self) -> None:
        for stop in reversed(self.stops):
            stop()


@pytest.fixture(scope="session")
def kept(pg_cluster):
    """Depends on the PostgreSQL cluster so that it stops after the deployments using it."""
    resources = Kept()
    yield resources
    resources.close()


@pytest.fixture(scope="session", params=["sqlite", "postgresql"])
def dep(request, tmp_path_factory, kept, pg_cluster) -> Deployment:
    def make() -> Deployment:
        url = pg_cluster.create_database(f"rssp_{request.param}") if request.param == "postgresql" else None
        deployment = make_deployment(tmp_path_factory.mktemp(request.param) / "instance", url)
        deployment.start(workers=2)
        return deployment

    return kept.get(f"dep-{request.param}", make, Deployment.stop)


@pytest_asyncio.fixture(scope="session")
async def http() -> AsyncIterator[aiohttp.ClientSession]:
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
def fdep(request, tmp_path_factory, kept, pg_cluster):
    from factors_helpers import factor_deployment

    def make():
        url = pg_cluster.create_database("rssp_factors") if request.param == "postgresql" else None
        return factor_deployment(tmp_path_factory.mktemp(f"factors-{request.param}") / "instance", url)

    def stop(deployment) -> None:
        deployment.dep.stop()
        deployment.op.stop()
        deployment.smtp.stop()

    return kept.get(f"factors-{request.param}", make, stop)


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
