#!/usr/bin/env bash
# Install what the test suite needs and run it (README, command 2).
#
#   bash scripts/test.sh [PYTEST_ARGS ...]      (default: tests)
#
# The suite starts its own throwaway PostgreSQL cluster (tests/pgcluster.py); set
# RSSP_TEST_PG_URL=postgresql+asyncpg://... to use an existing server instead.
# pytest's exit code passes through (5, "no tests collected", stays a failure).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# Debian packages the tests need beyond bootstrap.sh's base set.
TEST_APT_PACKAGES=(postgresql chromium)  # chromium: the OAuth pages in a real browser (Playwright)
TEST_APT_PACKAGES+=(iproute2)  # ip: loopback up in the netns where the openssl cmp mock runs (tests/cmp_mock.py)

bash scripts/bootstrap.sh --extras test "${TEST_APT_PACKAGES[@]}"

[[ $# -gt 0 ]] || set -- tests
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
