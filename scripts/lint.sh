#!/usr/bin/env bash
# The lint and type gates (scripts/test.sh runs them before the suite): ruff's rules and mypy,
# --strict for the core rssp/, mypy's defaults for the plug-ins, tests and benchmarks. Both read
# their configuration from pyproject.toml ([tool.ruff], [tool.mypy]). Any finding fails the script.
#
#   bash scripts/lint.sh            (uses .venv, where `--extras test` installs ruff and mypy)
#   RSSP_LINT_BIN=/some/venv/bin bash scripts/lint.sh
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
BIN="${RSSP_LINT_BIN:-$ROOT/.venv/bin}"

status=0
"$BIN/ruff" check . || status=1
# mypy resolves third-party imports in the project's environment, wherever mypy itself is installed.
"$BIN/mypy" --python-executable "$ROOT/.venv/bin/python" || status=1
exit "$status"
