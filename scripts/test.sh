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
# node also runs the test OpenID Provider (tests/oidc_op); the SMTP relay is aiosmtpd, a Python test extra

bash scripts/bootstrap.sh --extras test,devpki "${TEST_APT_PACKAGES[@]}"  # devpki: the tests' PKI (certomancer)

# npm packages the tests run, pinned by their lock files: xadesjs, the XAdES tests' independent verifier
# (tests/xadesjs), and oidc-provider, a real OpenID Provider on loopback (tests/oidc_op, test_factors_oidc.py)
for pkg in xadesjs:xadesjs oidc_op:oidc-provider; do
    dir="tests/${pkg%%:*}"
    if [[ ! -d "$dir/node_modules/${pkg#*:}" ]] && command -v npm >/dev/null 2>&1; then
        npm ci --prefix "$dir" --no-audit --no-fund >/tmp/rssp-npm.log 2>&1 \
            || { tail -n 20 /tmp/rssp-npm.log >&2; echo "[test] npm ci for $dir failed" >&2; exit 1; }
    fi
done

# The whole suite: one pytest worker per core (at least 2; RSSP_TEST_PROCESSES overrides), each test
# file on one worker so its module-scoped deployments start once. Most of a test's time is spent
# waiting on servers it started, so two files at once fit on two cores.
if [[ $# -eq 0 ]]; then
    bash "$ROOT/scripts/lint.sh"  # the lint and type gates first (ruff, mypy); a finding fails the run
    set -- -n "${RSSP_TEST_PROCESSES:-$(( $(nproc) > 2 ? $(nproc) : 2 ))}" --dist loadfile tests
fi
exec "$ROOT/.venv/bin/python" -m pytest -q -p no:cacheprovider "$@"
