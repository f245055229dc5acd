#!/usr/bin/env bash
# Property-based fuzzing of the HTTP API against its own OpenAPI document.
# Starts the real `spool server` (the debug binary; built if missing) on
# ephemeral loopback ports with a temporary data directory, validates
# /openapi.json with openapi-spec-validator, then runs schemathesis against
# every operation with generated requests: any 5xx, any answer that breaks
# the document (its schema, status code, content type or headers) fails
# the script. Last, a Python client generated from the document by
# openapi-python-client, unedited, publishes, receives, acks, submits a
# request and completes it (.ci/api_client_check.py). Installs the three
# tools with pip when missing (pinned below).
#
#   .ci/api-fuzz.sh                      # 25 examples per operation (CI)
#   API_FUZZ_EXAMPLES=500 .ci/api-fuzz.sh  # longer, locally
#   API_FUZZ_SEED=123 .ci/api-fuzz.sh      # repeat a run (its seed is printed)
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)
EXAMPLES=${API_FUZZ_EXAMPLES:-25}
SEED=${API_FUZZ_SEED:-$RANDOM}
SCHEMATHESIS_VERSION=4.32.5
SPEC_VALIDATOR_VERSION=0.9.0
CLIENT_GENERATOR_VERSION=0.29.1
BIN=${SPOOL_BIN:-target/debug/spool}

installed() { python3 -m pip show "$1" 2>/dev/null | sed -n 's/^Version: //p'; }
if [[ "$(installed schemathesis)" != "$SCHEMATHESIS_VERSION" \
  || "$(installed openapi-spec-validator)" != "$SPEC_VALIDATOR_VERSION" \
  || "$(installed openapi-python-client)" != "$CLIENT_GENERATOR_VERSION" ]]; then
  echo "== installing schemathesis $SCHEMATHESIS_VERSION, openapi-spec-validator" \
    "$SPEC_VALIDATOR_VERSION, openapi-python-client $CLIENT_GENERATOR_VERSION"
  python3 -m pip install --quiet --disable-pip-version-check \
    "schemathesis==$SCHEMATHESIS_VERSION" "openapi-spec-validator==$SPEC_VALIDATOR_VERSION" \
    "openapi-python-client==$CLIENT_GENERATOR_VERSION"
fi
[[ -x "$BIN" ]] || cargo build -p spool --bin spool

work=$(mktemp -d)
pid=""
cleanup() {
  [[ -n "$pid" ]] && kill "$pid" 2>/dev/null && wait "$pid" 2>/dev/null
  rm -rf "$work"
}
trap cleanup EXIT

"$BIN" server --data-dir "$work/data" --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 \
  >"$work/stdout" 2>"$work/server.log" &
pid=$!
http=""
for _ in $(seq 1 300); do
  http=$(sed -n 's/^spool http listening on //p' "$work/stdout")
  [[ -n "$http" ]] && break
  kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "the server did not start" >&2; exit 1; }
  sleep 0.1
done
[[ -n "$http" ]] || { echo "the server did not say where it listens" >&2; exit 1; }
url="http://$http"
echo "== server on $url (data in $work/data)"

echo "== openapi-spec-validator $url/openapi.json"
python3 -c "import sys, urllib.request; sys.stdout.write(urllib.request.urlopen(sys.argv[1]).read().decode())" \
  "$url/openapi.json" >"$work/openapi.json"
python3 -m openapi_spec_validator "$work/openapi.json"

echo "== schemathesis: $EXAMPLES examples per operation, seed $SEED"
# The hooks keep long polls short (wait_ms is capped), so a run takes
# seconds per operation, not minutes.
# Run from the temporary directory: schemathesis keeps a cache in its
# working directory, which must not land in the checkout.
status=0
(cd "$work" && PYTHONPATH="$repo/.ci" SCHEMATHESIS_HOOKS=api_fuzz_hooks schemathesis run "$url/openapi.json" \
  --checks not_a_server_error,status_code_conformance,content_type_conformance,response_headers_conformance,response_schema_conformance \
  --max-examples "$EXAMPLES" --seed "$SEED" --request-timeout 20 \
  --generation-database none --no-color) || status=$?
if [[ $status -ne 0 ]]; then
  echo "== the server's log (last 60 lines)"
  tail -60 "$work/server.log"
  echo "schemathesis found problems (seed $SEED)" >&2
  exit "$status"
fi
kill -0 "$pid" 2>/dev/null || { cat "$work/server.log"; echo "the server died" >&2; exit 1; }

echo "== a client generated from the document (openapi-python-client), unedited"
mkdir -p "$work/client"
openapi-python-client generate --path "$work/openapi.json" --meta none \
  --output-path "$work/client/spool_http_api_client" >"$work/generate.log" 2>&1 \
  || { cat "$work/generate.log"; echo "client generation failed" >&2; exit 1; }
python3 .ci/api_client_check.py "$url" "$work/client"
echo "== api fuzz ok"
