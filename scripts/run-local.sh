#!/usr/bin/env bash
# `make run`: start Azurite on 127.0.0.1 unless one is already listening, then the function app under devhost.
# Without local.settings.json it runs the demo: bare repos and Azurite data under .local/demo (rm -rf it to reset).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PY:-.venv/bin/python}"
PORT="${PORT:-7071}"

listening() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

if [ -f local.settings.json ]; then
  DATA=.local/azurite
else
  DATA=.local/demo/azurite
  eval "$("$PY" -m examples.demo_workspace --shell)"
fi
mkdir -p "$DATA"

AZURITE_PID=""
cleanup() { [ -n "$AZURITE_PID" ] && kill "$AZURITE_PID" 2>/dev/null || true; }
trap cleanup EXIT

if listening 10001 && listening 10002; then
  echo "Azurite already listening on 127.0.0.1:10001/10002; using it"
else
  node_modules/.bin/azurite --silent --disableTelemetry --skipApiVersionCheck --location "$DATA" \
    --blobHost 127.0.0.1 --queueHost 127.0.0.1 --tableHost 127.0.0.1 >"$DATA.log" 2>&1 &
  AZURITE_PID=$!
  for _ in $(seq 1 100); do listening 10001 && listening 10002 && break; sleep 0.1; done
  listening 10001 || { echo "Azurite did not start; see $DATA.log"; exit 1; }
  echo "Azurite started (data under $DATA, log $DATA.log)"
fi

"$PY" -m devhost --port "$PORT"
