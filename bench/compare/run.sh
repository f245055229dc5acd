#!/usr/bin/env bash
# Spool side by side with Redis Streams, NATS JetStream and RabbitMQ.
#
#   bench/compare/run.sh [--quick] [--systems spool,redis,nats,rabbitmq]
#                        [--tiers durable,default] [--out FILE] [--data-root DIR]
#                        [--rounds N]
#
# Installs the three peers from Debian packages when missing (as root),
# builds the spool binary and the harness (bench/compare, its own cargo
# workspace), then for each tier and system: starts that one server on
# loopback with a fresh temporary data directory and a non-default port,
# runs publish and consume, tuned and plain, against it (spool-compare
# run), and stops it; then, in --rounds rounds (default 3; 1 with --quick)
# in which the systems take turns, each on a fresh server: end-to-end,
# queue and the plain end-to-end (5,000 and 10,000 msgs/s). The table shows
# each system's median round. Only one server runs at a time; a stopped
# server's data is deleted and synced away before the next starts.
# Everything it started is stopped on exit, failure or Ctrl-C. At the end
# it measures the disk's sequential write bandwidth and prints the table
# (spool-compare table). Results: one JSON line per
# measurement, in --out (default: a file under the work directory, whose
# path is printed).
#
# Tiers: `durable` = Spool `always` vs Redis `appendfsync always`, JetStream
# with `sync_interval: always` if the installed nats-server knows it
# (otherwise its default, fsync every 2 min), RabbitMQ quorum queues with
# confirms; `default` = Spool `interval` (1 s) vs Redis `everysec`, the
# JetStream default, RabbitMQ classic durable queues with confirms.
#
# Ports (override with the environment): SPOOL_PORT 17520, REDIS_PORT 16479,
# NATS_PORT 14322, RABBITMQ_PORT 15772 (+ Erlang distribution 25772, epmd 14369).
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

quick=""
rounds=3
systems="spool,redis,nats,rabbitmq"
tiers="durable,default"
out=""
data_root="${TMPDIR:-/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick="--quick"; rounds=1 ;;
        --rounds) rounds="$2"; shift ;;
        --systems) systems="$2"; shift ;;
        --tiers) tiers="$2"; shift ;;
        --out) out="$2"; shift ;;
        --data-root) data_root="$2"; shift ;;
        -h|--help) sed -n '2,28p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

SPOOL_PORT=${SPOOL_PORT:-17520}
REDIS_PORT=${REDIS_PORT:-16479}
NATS_PORT=${NATS_PORT:-14322}
RABBITMQ_PORT=${RABBITMQ_PORT:-15772}
RABBITMQ_DIST_PORT=${RABBITMQ_DIST_PORT:-25772}
EPMD_PORT=${EPMD_PORT:-14369}

say() { echo "== $*" >&2; }

# ---- install ---------------------------------------------------------------
missing=()
command -v redis-server >/dev/null || missing+=(redis-server)
command -v nats-server >/dev/null || missing+=(nats-server)
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
if [ ${#missing[@]} -gt 0 ]; then
    say "installing ${missing[*]}"
    # The packages' init scripts would start their services on the default
    # ports; this script runs its own daemons, so keep them from starting.
    guard=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
        guard=1
    fi
    apt-get update -q >&2
    DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${missing[@]}" >&2
    [ -n "$guard" ] && rm -f /usr/sbin/policy-rc.d
fi

# ---- build -----------------------------------------------------------------
say "building spool and the harness (release)"
(cd "$root" && cargo build --release -q -p spool)
(cd "$here" && cargo build --release -q)
target="${CARGO_TARGET_DIR:-}"
spool_target="${target:-$root/target}"
cmp_target="${target:-$here/target}"

work=$(mktemp -d "$data_root/spool-compare.XXXXXX")
# Private copies, so that a concurrent build cannot swap a binary midway.
mkdir -p "$work/bin"
cp "$spool_target/release/spool" "$cmp_target/release/spool-compare" "$work/bin/"
results="${out:-$work/results.jsonl}"
: > "$results"

# ---- servers ---------------------------------------------------------------
server_pid=""
server_dir=""
epmd_started=""

stop_server() {
    if [ -n "$server_pid" ]; then
        kill -TERM -- "-$server_pid" 2>/dev/null || kill -TERM "$server_pid" 2>/dev/null || true
        for _ in $(seq 1 300); do
            kill -0 "$server_pid" 2>/dev/null || break
            sleep 0.1
        done
        kill -KILL -- "-$server_pid" 2>/dev/null || true
        wait "$server_pid" 2>/dev/null || true
        server_pid=""
        # Its data goes now, and `sync` waits for the filesystem to trim the
        # freed blocks (ext4 `discard` does it at the journal commit), so
        # that the next system's fdatasyncs do not wait behind it.
        rm -rf "$server_dir"
        sync
    fi
    if [ -n "$epmd_started" ]; then
        # RabbitMQ's Erlang VM leaves its port mapper daemon running.
        epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
        epmd_started=""
    fi
}

cleanup() {
    local rc=$?
    stop_server
    if [ -z "$out" ] && [ -s "$results" ]; then
        cp "$results" "${data_root}/spool-compare-results.jsonl" 2>/dev/null || true
        echo "results: ${data_root}/spool-compare-results.jsonl" >&2
    fi
    rm -rf "$work"
    exit $rc
}
trap cleanup EXIT
trap 'exit 130' INT TERM

wait_port() {
    local port=$1 log=$2
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sleep 0.5
            return 0
        fi
        if ! kill -0 "$server_pid" 2>/dev/null; then
            echo "the server exited; its log:" >&2
            tail -30 "$log" >&2
            return 1
        fi
        sleep 0.1
    done
    echo "nothing listens on port $port after 60 s; log:" >&2
    tail -30 "$log" >&2
    return 1
}

port_free() {
    if (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; then
        echo "port $1 is in use; set another with the environment (see --help)" >&2
        return 1
    fi
}

# Does the installed nats-server know `sync_interval` (fsync on every write)?
nats_sync_always=""
if [[ ",$systems," == *",nats,"* ]]; then
    probe="$work/nats-probe.conf"
    printf 'jetstream {\n  store_dir: "%s"\n  sync_interval: always\n}\n' "$work/nats-probe" > "$probe"
    if nats-server -c "$probe" -t >/dev/null 2>&1; then
        nats_sync_always="--nats-sync-always"
    else
        say "nats-server $(nats-server --version | awk '{print $2}') has no sync_interval: JetStream's durable row uses its default (fsync every 2 min)"
    fi
fi

# start_server SYSTEM TIER: starts it in a session of its own, sets $addr.
start_server() {
    local system=$1 tier=$2
    local dir="$work/$system-$tier"
    local log="$dir/server.log"
    mkdir -p "$dir"
    server_dir=$dir
    case "$system" in
    spool)
        port_free "$SPOOL_PORT"
        addr="127.0.0.1:$SPOOL_PORT"
        setsid "$work/bin/spool" server --data-dir "$dir/data" --listen "$addr" \
            --http-listen off --log-level warn > "$log" 2>&1 &
        server_pid=$!
        wait_port "$SPOOL_PORT" "$log"
        ;;
    redis)
        port_free "$REDIS_PORT"
        addr="127.0.0.1:$REDIS_PORT"
        local fsync=always
        [ "$tier" = default ] && fsync=everysec
        # AOF only: RDB snapshots (fork + write of the whole data set) are
        # switched off so that they do not fall into the measurements.
        setsid redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --dir "$dir" \
            --appendonly yes --appendfsync "$fsync" --save "" --daemonize no \
            --logfile "" > "$log" 2>&1 &
        server_pid=$!
        wait_port "$REDIS_PORT" "$log"
        ;;
    nats)
        port_free "$NATS_PORT"
        addr="127.0.0.1:$NATS_PORT"
        local sync=""
        [ "$tier" = durable ] && [ -n "$nats_sync_always" ] && sync="  sync_interval: always"
        printf 'listen: "%s"\njetstream {\n  store_dir: "%s"\n%s\n}\n' \
            "$addr" "$dir/js" "$sync" > "$dir/nats.conf"
        setsid nats-server -c "$dir/nats.conf" > "$log" 2>&1 &
        server_pid=$!
        wait_port "$NATS_PORT" "$log"
        ;;
    rabbitmq)
        port_free "$RABBITMQ_PORT"
        port_free "$EPMD_PORT"
        addr="127.0.0.1:$RABBITMQ_PORT"
        echo '[].' > "$dir/enabled_plugins"
        epmd_started=1
        # HOME: where the Erlang cookie is made.
        setsid env HOME="$dir" \
            RABBITMQ_NODENAME="spoolcmp@localhost" \
            RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
            RABBITMQ_NODE_PORT="$RABBITMQ_PORT" \
            RABBITMQ_DIST_PORT="$RABBITMQ_DIST_PORT" \
            ERL_EPMD_PORT="$EPMD_PORT" \
            ERL_EPMD_ADDRESS=127.0.0.1 \
            RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}" \
            RABBITMQ_MNESIA_BASE="$dir/mnesia" \
            RABBITMQ_LOG_BASE="$dir/log" \
            RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins" \
            RABBITMQ_CONFIG_FILE="$dir/rabbitmq" \
            RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config" \
            RABBITMQ_PID_FILE="$dir/rabbitmq.pid" \
            /usr/lib/rabbitmq/bin/rabbitmq-server > "$log" 2>&1 &
        server_pid=$!
        wait_port "$RABBITMQ_PORT" "$log"
        ;;
    *)
        echo "unknown system $system" >&2
        return 1
        ;;
    esac
}

# ---- versions --------------------------------------------------------------
{
    echo "spool: $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') (spool-client path dependency)"
    echo "redis-server: $(redis-server --version | sed 's/Redis server //')"
    echo "nats-server: $(nats-server --version)"
    echo "rabbitmq-server: $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null), erlang: $(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null)"
    for crate in redis async-nats lapin; do
        printf 'crate %s: ' "$crate"
        awk -v n="$crate" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' "$here/Cargo.lock"
    done
} | tee "$work/versions.txt" >&2

# ---- run -------------------------------------------------------------------
IFS=, read -r -a tier_list <<< "$tiers"
IFS=, read -r -a system_list <<< "$systems"
# Throughput: each system's publish and consume, tuned and plain, run in
# one server's life.
for tier in "${tier_list[@]}"; do
    for system in "${system_list[@]}"; do
        say "$system, tier $tier — $(uptime | sed 's/.*load/load/')"
        start_server "$system" "$tier"
        "$work/bin/spool-compare" run --system "$system" --addr "$addr" --tier "$tier" \
            --only publish,consume,plain-publish,plain-consume \
            $quick $nats_sync_always >> "$results"
        stop_server
    done
done
# End-to-end latency (tuned and plain) and the queue round trip, in
# rounds: the systems take turns, each round on fresh servers. This VM
# stalls now and then for tens to hundreds of ms (the harness's hiccup
# probe measures it), and one stall fills a 10 s run's p99 on its own;
# taking turns spreads the stalls over the systems, and the table shows
# each system's median round.
for tier in "${tier_list[@]}"; do
    for round in $(seq 1 "$rounds"); do
        for system in "${system_list[@]}"; do
            say "$system, tier $tier, round $round of $rounds — $(uptime | sed 's/.*load/load/')"
            start_server "$system" "$tier"
            "$work/bin/spool-compare" run --system "$system" --addr "$addr" --tier "$tier" \
                --only end-to-end,queue,plain-end-to-end \
                $quick $nats_sync_always >> "$results"
            stop_server
        done
    done
done

say "disk sequential write bandwidth ($data_root)"
"$work/bin/spool-compare" disk --dir "$work" $quick >> "$results"

echo
cat "$work/versions.txt"
echo
"$work/bin/spool-compare" table "$results"
