#!/usr/bin/env bash
# Start rssp on this machine with a demo user and credential (README, command 1).
#
#   bash scripts/start.sh
#
# Installs what it needs (scripts/bootstrap.sh), creates the instance on first run and
# serves the CSC v2 API in the foreground. Environment:
#   RSSP_PORT      port to listen on (default 8080)
#   RSSP_INSTANCE  instance directory (default ./instance)
# The demo user and credential are added by the instance's first operator ('admin'), whose
# credentials 'rssp init' writes to INSTANCE/operator.json (mode 0600, development instances only).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
PORT="${RSSP_PORT:-8080}"
INSTANCE="${RSSP_INSTANCE:-./instance}"
# RSSP_INSTANCE is relative to the caller's directory; the default is the repo's ./instance
if [[ -n "${RSSP_INSTANCE:-}" && "$INSTANCE" != /* ]]; then INSTANCE="$PWD/$INSTANCE"; fi
cd "$ROOT"
DEMO_USER=demo
DEMO_PASSWORD=demo-password
DEMO_PIN=123456

bash scripts/bootstrap.sh --extras devpki  # the instance below is a development one: its test PKI

RSSP="$ROOT/.venv/bin/rssp"
PY="$ROOT/.venv/bin/python"
[[ -x "$RSSP" ]] || { echo "[start] error: $RSSP missing after bootstrap" >&2; exit 1; }

if [[ ! -e "$INSTANCE" ]]; then
    echo "[start] creating instance $INSTANCE" >&2
    # a half-made instance would be skipped next time: remove it if any step fails
    trap 'echo "[start] error: set-up failed, removing $INSTANCE" >&2; rm -rf -- "$INSTANCE"' ERR
    "$RSSP" init "$INSTANCE" --operator-file "$INSTANCE/operator.json"
    export RSSP_OPERATOR_FILE="$INSTANCE/operator.json"  # privileged commands run as that operator
    "$RSSP" user add "$INSTANCE" "$DEMO_USER" --password "$DEMO_PASSWORD"
    cred_json="$("$RSSP" credential create "$INSTANCE" --user "$DEMO_USER" --level 1 \
        --key rsa-2048 --pin "$DEMO_PIN" --json)"
    unset RSSP_OPERATOR_FILE
    CRED_JSON="$cred_json" DEMO_USER="$DEMO_USER" DEMO_PASSWORD="$DEMO_PASSWORD" \
    DEMO_PIN="$DEMO_PIN" "$PY" - "$INSTANCE/demo.json" <<'EOF'
import json, os, sys
out = os.environ["CRED_JSON"].strip()
try:
    data = json.loads(out)
except ValueError:
    # tolerate log lines before the JSON document
    data = json.loads(out[out.index("{"):])
cred_id = data["credentialID"]
with open(sys.argv[1], "w") as f:
    json.dump({"user": os.environ["DEMO_USER"], "password": os.environ["DEMO_PASSWORD"],
               "pin": os.environ["DEMO_PIN"], "credentialID": cred_id}, f, indent=2)
    f.write("\n")
EOF
    trap - ERR
fi

demo_field() {
    [[ -f "$INSTANCE/demo.json" ]] || { echo "?"; return; }
    "$PY" -c 'import json,sys; print(json.load(open(sys.argv[1])).get(sys.argv[2], "?"))' \
        "$INSTANCE/demo.json" "$1"
}

cat <<EOF

  rssp — Remote Signing Service Provider
  ----------------------------------------------------------------
  CSC v2 base URL : http://127.0.0.1:${PORT}/csc/v2/
  instance        : ${INSTANCE}
  demo user       : $(demo_field user)   password: $(demo_field password)
  credential ID   : $(demo_field credentialID)
  credential PIN  : $(demo_field pin)
  operator        : admin, credentials in ${INSTANCE}/operator.json
                    (export RSSP_OPERATOR_FILE=${INSTANCE}/operator.json to run privileged commands)
  ----------------------------------------------------------------
  (Ctrl-C stops the server)

EOF

exec "$RSSP" serve "$INSTANCE" --host 127.0.0.1 --port "$PORT"
