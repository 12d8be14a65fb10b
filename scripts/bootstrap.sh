#!/usr/bin/env bash
# Shared, idempotent set-up for rssp (used by scripts/start.sh and scripts/test.sh).
#
#   bash scripts/bootstrap.sh [--extras NAME[,NAME]] [APT_PACKAGE ...]
#
# 1. apt: the base set below plus any APT_PACKAGE given; apt-get is skipped entirely when
#    every package is already installed (so a warm run costs a dpkg-query).
# 2. .venv in the repo root, made with `python3 -m venv` (Debian's /usr/bin/python3 when it
#    exists; override with RSSP_PYTHON=/path/to/python3).
# 3. `pip install -e '.[extras]'`, only when pyproject.toml changed since the last install or
#    an extra not installed before is asked for (stamp: .venv/.rssp-install-stamp).
set -euo pipefail

BASE_APT_PACKAGES=(python3 python3-venv python3-dev build-essential softhsm2 openssl)

log() { printf '[bootstrap] %s\n' "$*" >&2; }
die() { printf '[bootstrap] error: %s\n' "$*" >&2; exit 1; }

EXTRAS=""
APT_EXTRA=()
while [[ $# -gt 0 ]]; do
    case "$1" in
        --extras) [[ $# -ge 2 ]] || die "--extras needs a value"; EXTRAS="$2"; shift 2 ;;
        --extras=*) EXTRAS="${1#--extras=}"; shift ;;
        -h|--help) sed -n '2,12p' "$0"; exit 0 ;;
        -*) die "unknown option: $1" ;;
        *) APT_EXTRA+=("$1"); shift ;;
    esac
done

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

# ---------------------------------------------------------------- 1. Debian packages
missing=()
for pkg in "${BASE_APT_PACKAGES[@]}" "${APT_EXTRA[@]}"; do
    status="$(dpkg-query -W -f='${db:Status-Status}' "$pkg" 2>/dev/null || true)"
    [[ "$status" == "installed" ]] || missing+=("$pkg")
done
if [[ ${#missing[@]} -gt 0 ]]; then
    SUDO=()
    if [[ "$(id -u)" -ne 0 ]]; then
        command -v sudo >/dev/null 2>&1 || die "not root and no sudo; install: ${missing[*]}"
        SUDO=(sudo -n)
    fi
    log "apt: installing ${missing[*]}"
    t0=$SECONDS
    export DEBIAN_FRONTEND=noninteractive
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >/tmp/rssp-apt.log 2>&1 \
        || { tail -n 30 /tmp/rssp-apt.log >&2; die "apt-get update failed"; }
    "${SUDO[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -q \
        "${missing[@]}" </dev/null >>/tmp/rssp-apt.log 2>&1 \
        || { tail -n 30 /tmp/rssp-apt.log >&2; die "apt-get install failed (log: /tmp/rssp-apt.log)"; }
    log "apt: done in $((SECONDS - t0))s"
else
    log "apt: all ${#BASE_APT_PACKAGES[@]}+${#APT_EXTRA[@]} packages already installed"
fi

# ---------------------------------------------------------------- 2. virtualenv
PY="${RSSP_PYTHON:-}"
if [[ -z "$PY" ]]; then
    if [[ -x /usr/bin/python3 ]]; then PY=/usr/bin/python3; else PY="$(command -v python3)"; fi
fi
VENV="$ROOT/.venv"
if [[ -x "$VENV/bin/python" ]] && "$VENV/bin/python" -c 'import sys; assert sys.version_info >= (3, 11)' 2>/dev/null; then
    :
else
    [[ -e "$VENV" ]] && { log "venv: $VENV is broken, recreating"; rm -rf "$VENV"; }
    log "venv: creating $VENV with $PY ($("$PY" --version 2>&1))"
    "$PY" -m venv "$VENV" || die "python3 -m venv failed (is python3-venv installed?)"
fi

# ---------------------------------------------------------------- 3. the project itself
STAMP="$VENV/.rssp-install-stamp"
want_hash="$(sha256sum pyproject.toml | cut -d' ' -f1)"
have_hash=""; have_extras=""
if [[ -f "$STAMP" ]]; then
    have_hash="$(sed -n 1p "$STAMP")"
    have_extras="$(sed -n 2p "$STAMP")"
fi
need_install=0
[[ "$want_hash" == "$have_hash" ]] || need_install=1
# asked-for extras must be a subset of the installed ones
IFS=',' read -r -a want_list <<<"$EXTRAS"
for e in "${want_list[@]}"; do
    [[ -z "$e" ]] && continue
    [[ ",$have_extras," == *",$e,"* ]] || need_install=1
done
# keep what was installed before: install the union, so start.sh and test.sh don't ping-pong
all_extras="$(printf '%s\n' ${have_extras//,/ } ${EXTRAS//,/ } | sed '/^$/d' | sort -u | paste -sd, -)"
# the editable install must point at this tree (find_spec does not run rssp/__init__.py;
# -I keeps the current directory off sys.path)
if [[ $need_install -eq 0 ]] && ! "$VENV/bin/python" -I -c '
import importlib.util, os, sys
spec = importlib.util.find_spec("rssp")
ok = spec is not None and spec.origin is not None and os.path.realpath(spec.origin).startswith(os.path.realpath(sys.argv[1]) + os.sep)
sys.exit(0 if ok else 1)' "$ROOT" 2>/dev/null; then
    log "pip: installed rssp does not point at $ROOT"
    need_install=1
fi

if [[ $need_install -eq 1 ]]; then
    target="."
    [[ -n "$all_extras" ]] && target=".[${all_extras}]"
    log "pip: installing -e '$target' (pyproject.toml changed or first run)"
    t0=$SECONDS
    export PIP_DISABLE_PIP_VERSION_CHECK=1 PIP_NO_INPUT=1
    # (the filter drops pip's notes about unreachable local index folders in pip.conf)
    "$VENV/bin/python" -m pip install -q -e "$target" </dev/null 2>&1 \
        | { grep -v "^WARNING: Location 'file://.*' is ignored" || true; } >&2 \
        || die "pip install -e '$target' failed"
    printf '%s\n%s\n' "$want_hash" "$all_extras" >"$STAMP"
    log "pip: done in $((SECONDS - t0))s"
else
    log "pip: up to date (extras: ${have_extras:-none})"
fi
