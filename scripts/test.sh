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
TEST_APT_PACKAGES+=(xmlsec1 nodejs)  # xmlsec1 --verify and node (xadesjs): independent XAdES checks (tests/xades_helpers.py)

bash scripts/bootstrap.sh --extras test "${TEST_APT_PACKAGES[@]}"

# xadesjs, the XAdES tests' independent verifier, from the npm registry (versions in tests/xadesjs/package-lock.json)
if [[ ! -d tests/xadesjs/node_modules/xadesjs ]] && command -v npm >/dev/null 2>&1; then
    npm ci --prefix tests/xadesjs --no-audit --no-fund >/tmp/rssp-npm.log 2>&1 \
        || { tail -n 20 /tmp/rssp-npm.log >&2; echo "[test] npm ci for tests/xadesjs failed" >&2; exit 1; }
fi

[[ $# -gt 0 ]] || set -- tests
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
