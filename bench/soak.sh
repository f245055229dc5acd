#!/usr/bin/env bash
# Soak (reliability issue): DURATION_S (default 1800 = 30 min) of mixed load
# on one `spool server`, each load in a loop of 60 s `spool bench` runs
# (each run creates its topic and deletes it at the end, so topics churn
# too):
#   - end-to-end publish -> deliver at 2,000 msg/s (1 KiB, fsync always)
#   - queue publish -> receive -> ack at 1,000 msg/s with 16 workers
#   - request records submit -> worker -> complete, about 100/s on average
# Every 60 s it samples the server's resident memory, open file
# descriptors, threads and data directory size, and prints one line.
#
#   bench/soak.sh                 # 30 minutes
#   DURATION_S=300 bench/soak.sh  # a quick look
#   E2E_RATE, QUEUE_RATE, REQUEST_RATE change the rates (msg/s, requests/s)
#   SPOOL_BIN=/path/to/spool uses that binary instead of building one
set -euo pipefail
cd "$(dirname "$0")/.."
DURATION_S=${DURATION_S:-1800}
SAMPLE_S=${SAMPLE_S:-60}
E2E_RATE=${E2E_RATE:-2000}
QUEUE_RATE=${QUEUE_RATE:-1000}
REQUEST_RATE=${REQUEST_RATE:-100}

# SPOOL_BIN: run a binary built elsewhere (e.g. a copy, so that rebuilding
# the tree during a 30-minute soak does not swap the client under it).
if [[ -z "${SPOOL_BIN:-}" ]]; then
  cargo build --release -q -p spool --bin spool
fi
BIN=${SPOOL_BIN:-target/release/spool}
WORK=$(mktemp -d)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
  [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT

# Finished request records are kept 60 s, so their store reaches a steady size.
"$BIN" server --listen 127.0.0.1:0 --http-listen off --data-dir "$WORK/data" \
  --request-ttl-ms 60000 >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
  grep -q "spool listening on" "$WORK/server.out" && break
  sleep 0.1
done
ADDR=$(sed -n 's/^spool listening on //p' "$WORK/server.out")
START=$SECONDS
END=$((START + DURATION_S))

# loop NAME COMMAND...: runs COMMAND until the end, counting failed runs.
loop() {
  local name=$1 failures=0
  shift
  while ((SECONDS < END)); do
    if ! "$@" >/dev/null 2>>"$WORK/load.err"; then
      failures=$((failures + 1))
      sleep 1
    fi
  done
  echo "$failures" >"$WORK/failures.$name"
}
loop end-to-end "$BIN" bench end-to-end --addr "$ADDR" --rate "$E2E_RATE" --duration-s 60 &
PIDS+=($!)
loop queue "$BIN" bench queue --addr "$ADDR" --rate "$QUEUE_RATE" --duration-s 60 --consumers 16 &
PIDS+=($!)
# The requests workload is not paced: batches of REQUEST_BATCH, then a pause.
REQUEST_BATCH=$((REQUEST_RATE * 10))
loop requests bash -c "'$BIN' bench requests --addr '$ADDR' --count $REQUEST_BATCH --status-duration-s 1 && sleep 9" &
PIDS+=($!)

sample() {
  local rss fds threads disk
  rss=$(awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status")
  threads=$(awk '/Threads/ {print $2}' "/proc/$SERVER_PID/status")
  fds=$(ls "/proc/$SERVER_PID/fd" | wc -l)
  disk=$(du -sk "$WORK/data" | cut -f1)
  printf '%6d %10d %6d %8d %10d\n' "$(((SECONDS - START) / 60))" "$rss" "$fds" "$threads" "$disk"
}
echo "server $ADDR pid $SERVER_PID; load for ${DURATION_S} s (end-to-end $E2E_RATE/s, queue $QUEUE_RATE/s, requests $REQUEST_RATE/s); a sample every ${SAMPLE_S} s"
printf '%6s %10s %6s %8s %10s\n' "min" "rss_kib" "fds" "threads" "data_kib"
sample
while ((SECONDS < END)); do
  sleep "$SAMPLE_S"
  kill -0 "$SERVER_PID" || { echo "the server died"; exit 1; }
  sample
done
wait "${PIDS[@]}" 2>/dev/null || true
for f in "$WORK"/failures.*; do
  echo "failed ${f##*.} runs: $(cat "$f")"
done
[[ -s "$WORK/load.err" ]] && { echo "load errors (first 5):"; head -5 "$WORK/load.err"; }
echo "server errors logged: $(grep -c ERROR "$WORK/server.err" || true)"
grep ERROR "$WORK/server.err" | head -5 || true
