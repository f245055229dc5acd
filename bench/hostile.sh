#!/usr/bin/env bash
# Reliability benchmark (issue: slow and hostile clients). Measures a
# well-behaved client's publish -> deliver latency (`spool bench
# end-to-end`) on an unloaded server, then again while
# `crates/spool/examples/hostile_load.rs` keeps 10,000 idle connections,
# 20 clients that pipeline big fetches and never read, 300 slowloris HTTP
# clients and 50 garbage connections a second on it. Prints both runs, the
# p99 ratio (target: loaded <= 2x unloaded) and the server's peak RSS.
#
#   bench/hostile.sh                       # 5,000 msg/s for 20 s each run
#   RATE=10000 DURATION_S=30 bench/hostile.sh
#   LOAD_ARGS="--idle 0 --slowloris 0" bench/hostile.sh   # one kind of load only
set -euo pipefail
cd "$(dirname "$0")/.."
RATE=${RATE:-5000}
DURATION_S=${DURATION_S:-20}

cargo build --release -q -p spool --bin spool --example hostile_load
BIN=target/release/spool
LOAD=target/release/examples/hostile_load
WORK=$(mktemp -d)
cleanup() {
  [[ -n "${LOAD_PID:-}" ]] && kill "$LOAD_PID" 2>/dev/null || true
  [[ -n "${SAMPLER_PID:-}" ]] && kill "$SAMPLER_PID" 2>/dev/null || true
  [[ -n "${SERVER_PID:-}" ]] && kill "$SERVER_PID" 2>/dev/null || true
  wait 2>/dev/null || true
  rm -rf "$WORK"
}
trap cleanup EXIT
ulimit -n 65536 2>/dev/null || ulimit -n "$(ulimit -Hn)"

"$BIN" server --listen 127.0.0.1:0 --http-listen 127.0.0.1:0 --data-dir "$WORK/data" \
  >"$WORK/server.out" 2>"$WORK/server.err" &
SERVER_PID=$!
for _ in $(seq 100); do
  [[ $(wc -l <"$WORK/server.out") -ge 2 ]] && break
  sleep 0.1
done
ADDR=$(sed -n 's/^spool listening on //p' "$WORK/server.out")
HTTP=$(sed -n 's/^spool http listening on //p' "$WORK/server.out")
rss_kib() { awk '/VmRSS/ {print $2}' "/proc/$SERVER_PID/status"; }
echo "server $ADDR (http $HTTP), pid $SERVER_PID, idle RSS $(rss_kib) KiB"

bench() {
  "$BIN" bench end-to-end --addr "$ADDR" --rate "$RATE" --duration-s "$DURATION_S" --json 2>/dev/null
}
summary() {
  python3 -c 'import json,sys; d=json.loads(sys.stdin.read()); print(json.dumps({k: d[k] for k in ("msgs_per_s","p50_us","p99_us","p999_us","max_us")}))'
}

echo "== unloaded: spool bench end-to-end --rate $RATE --duration-s $DURATION_S"
UNLOADED=$(bench)
echo "$UNLOADED" | summary

# shellcheck disable=SC2086 # LOAD_ARGS is a list of flags
"$LOAD" --addr "$ADDR" --http "$HTTP" --duration-s $((DURATION_S + 60)) ${LOAD_ARGS:-} 2>"$WORK/load.err" &
LOAD_PID=$!
for _ in $(seq 300); do
  grep -q "hostile load up" "$WORK/load.err" && break
  sleep 0.2
done
cat "$WORK/load.err"
( while kill -0 "$SERVER_PID" 2>/dev/null; do rss_kib >>"$WORK/rss"; sleep 1; done ) &
SAMPLER_PID=$!
sleep 3
echo "== under hostile load: same command"
LOADED=$(bench)
echo "$LOADED" | summary
kill -0 "$SERVER_PID" || { echo "the server died"; exit 1; }
FDS=$(ls "/proc/$SERVER_PID/fd" | wc -l)
PEAK=$(sort -n "$WORK/rss" | tail -1)
python3 - "$UNLOADED" "$LOADED" "$PEAK" "$FDS" <<'PY'
import json, sys
u, l = json.loads(sys.argv[1]), json.loads(sys.argv[2])
ratio = l["p99_us"] / max(u["p99_us"], 1)
print(f"p99 unloaded {u['p99_us']} us, loaded {l['p99_us']} us: ratio {ratio:.2f} (target <= 2.00)")
print(f"p50 unloaded {u['p50_us']} us, loaded {l['p50_us']} us")
print(f"server peak RSS under load {int(sys.argv[3]) // 1024} MiB, open fds {sys.argv[4]}")
PY
