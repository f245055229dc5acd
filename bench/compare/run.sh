#!/usr/bin/env bash
# Spool side by side with Redis Streams, NATS JetStream and RabbitMQ.
#
#   bench/compare/run.sh [--quick] [--systems spool,redis,nats,rabbitmq]
#                        [--tiers durable,default] [--out FILE] [--data-root DIR]
#                        [--rounds N]
#   bench/compare/run.sh --cluster [--quick] [--systems spool,spool-single,nats,rabbitmq]
#                        [--out FILE] [--data-root DIR] [--rounds N]
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
# --cluster (issue 18): 3-node clusters instead, one system at a time, on
# loopback, each node with its own fresh data directory: Spool (3 `spool
# server` processes, --peers and a cluster secret; topics of 3 partitions
# with 3 replicas), NATS JetStream (3 nats-servers with a cluster block;
# streams with num_replicas 3) and RabbitMQ (3 nodes joined with
# rabbitmqctl join_cluster; quorum queues with a member on each), plus
# `spool-single`: one Spool node with the same 3-partition topics, to show
# what replication costs. Durable tier only: durable publish and consume
# of 100 B and 1 KiB once per system, then end-to-end p50/p99 (1 KiB at
# 5,000 msgs/s) in --rounds rounds, each system on a fresh cluster every
# round. Then the cluster table (spool-compare table): Spool against the
# best peer cluster, and the 3-node Spool against the single node.
#
# SPOOL_BIN=PATH uses that spool binary instead of building the workspace
# (e.g. /work/main/target/release/spool); run.sh copies it first.
#
# Ports (override with the environment): SPOOL_PORT 17520, REDIS_PORT 16479,
# NATS_PORT 14322, RABBITMQ_PORT 15772 (+ Erlang distribution 25772, epmd 14369).
# With --cluster node i (1-3) listens on: Spool SPOOL_PORT+10(i-1) (its
# cluster link +2), NATS NATS_PORT+i-1 (routes NATS_CLUSTER_PORT+i-1,
# default 14332), RabbitMQ RABBITMQ_PORT+i-1 (distribution
# RABBITMQ_DIST_PORT+i-1); one epmd on EPMD_PORT.
set -euo pipefail

here=$(cd "$(dirname "$0")" && pwd)
root=$(cd "$here/../.." && pwd)

quick=""
rounds=3
cluster=""
systems=""
tiers="durable,default"
out=""
data_root="${TMPDIR:-/tmp}"
while [ $# -gt 0 ]; do
    case "$1" in
        --quick) quick="--quick"; rounds=1 ;;
        --cluster) cluster=1 ;;
        --rounds) rounds="$2"; shift ;;
        --systems) systems="$2"; shift ;;
        --tiers) tiers="$2"; shift ;;
        --out) out="$2"; shift ;;
        --data-root) data_root="$2"; shift ;;
        -h|--help) sed -n '2,53p' "$0"; exit 0 ;;
        *) echo "unknown option $1" >&2; exit 2 ;;
    esac
    shift
done

if [ -n "$cluster" ]; then
    systems="${systems:-spool,spool-single,nats,rabbitmq}"
    tiers=durable
else
    systems="${systems:-spool,redis,nats,rabbitmq}"
fi

SPOOL_PORT=${SPOOL_PORT:-17520}
REDIS_PORT=${REDIS_PORT:-16479}
NATS_PORT=${NATS_PORT:-14322}
NATS_CLUSTER_PORT=${NATS_CLUSTER_PORT:-14332}
RABBITMQ_PORT=${RABBITMQ_PORT:-15772}
RABBITMQ_DIST_PORT=${RABBITMQ_DIST_PORT:-25772}
EPMD_PORT=${EPMD_PORT:-14369}

say() { echo "== $*" >&2; }

# ---- install ---------------------------------------------------------------
wants() { [[ ",$systems," == *",$1,"* ]]; }
missing=()
if wants redis; then command -v redis-server >/dev/null || missing+=(redis-server); fi
if wants nats; then command -v nats-server >/dev/null || missing+=(nats-server); fi
if wants rabbitmq; then
    [ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || missing+=(rabbitmq-server)
fi
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
target="${CARGO_TARGET_DIR:-}"
spool_target="${target:-$root/target}"
cmp_target="${target:-$here/target}"
if [ -n "${SPOOL_BIN:-}" ]; then
    say "building the harness (release); spool: $SPOOL_BIN"
    spool_bin=$SPOOL_BIN
else
    say "building spool and the harness (release)"
    (cd "$root" && cargo build --release -q -p spool)
    spool_bin="$spool_target/release/spool"
fi
(cd "$here" && cargo build --release -q)

work=$(mktemp -d "$data_root/spool-compare.XXXXXX")
# Private copies, so that a concurrent build cannot swap a binary midway.
mkdir -p "$work/bin"
cp "$spool_bin" "$work/bin/spool"
cp "$cmp_target/release/spool-compare" "$work/bin/"
results="${out:-$work/results.jsonl}"
: > "$results"

# ---- servers ---------------------------------------------------------------
# Every server process runs in a session of its own (setsid), whose leader's
# pid is in server_pids: stopping signals the whole process group.
server_pids=()
server_dir=""
epmd_started=""

stop_server() {
    if [ ${#server_pids[@]} -gt 0 ]; then
        local pid rc
        for pid in "${server_pids[@]}"; do
            if ! kill -0 "$pid" 2>/dev/null; then
                # It should still be running: say so, with the logs.
                wait "$pid" 2>/dev/null && rc=0 || rc=$?
                echo "server process $pid had exited (status $rc) before it was stopped; logs in $server_dir:" >&2
                find "$server_dir" -maxdepth 1 -name '*.log' -exec tail -n 5 {} + >&2 || true
            fi
        done
        for pid in "${server_pids[@]}"; do
            kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        done
        for _ in $(seq 1 300); do
            local alive=""
            for pid in "${server_pids[@]}"; do
                kill -0 "$pid" 2>/dev/null && alive=1
            done
            [ -z "$alive" ] && break
            sleep 0.1
        done
        for pid in "${server_pids[@]}"; do
            kill -KILL -- "-$pid" 2>/dev/null || true
            wait "$pid" 2>/dev/null || true
        done
        server_pids=()
    fi
    if [ -n "$epmd_started" ]; then
        # RabbitMQ's Erlang VM leaves its port mapper daemon running.
        epmd -port "$EPMD_PORT" -kill >/dev/null 2>&1 || true
        epmd_started=""
    fi
    if [ -n "$server_dir" ]; then
        # Its data goes now, and `sync` waits for the filesystem to trim the
        # freed blocks (ext4 `discard` does it at the journal commit), so
        # that the next system's fdatasyncs do not wait behind it.
        rm -rf "$server_dir"
        server_dir=""
        sync
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

# wait_port PORT LOG PID: until something listens on PORT, while PID lives.
wait_port() {
    local port=$1 log=$2 pid=$3
    for _ in $(seq 1 600); do
        if (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null; then
            sleep 0.5
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
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
        server_pids=($!)
        wait_port "$SPOOL_PORT" "$log" $!
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
        server_pids=($!)
        wait_port "$REDIS_PORT" "$log" $!
        ;;
    nats)
        port_free "$NATS_PORT"
        addr="127.0.0.1:$NATS_PORT"
        local sync=""
        [ "$tier" = durable ] && [ -n "$nats_sync_always" ] && sync="  sync_interval: always"
        printf 'listen: "%s"\njetstream {\n  store_dir: "%s"\n%s\n}\n' \
            "$addr" "$dir/js" "$sync" > "$dir/nats.conf"
        setsid nats-server -c "$dir/nats.conf" > "$log" 2>&1 &
        server_pids=($!)
        wait_port "$NATS_PORT" "$log" $!
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
        server_pids=($!)
        wait_port "$RABBITMQ_PORT" "$log" $!
        ;;
    *)
        echo "unknown system $system" >&2
        return 1
        ;;
    esac
}

# ---- clusters (--cluster) ---------------------------------------------------
NODES=3

# rabbit_vars DIR I: sets $rvars to the environment of node I of the
# RabbitMQ cluster in DIR: its own ports, data and logs, and the cookie
# that every node and rabbitmqctl share ($DIR/home/.erlang.cookie).
rabbit_vars() {
    local dir=$1 i=$2
    rvars=(
        HOME="$dir/home"
        RABBITMQ_NODENAME="rabbit$i@localhost"
        RABBITMQ_NODE_IP_ADDRESS=127.0.0.1
        RABBITMQ_NODE_PORT="$((RABBITMQ_PORT + i - 1))"
        RABBITMQ_DIST_PORT="$((RABBITMQ_DIST_PORT + i - 1))"
        ERL_EPMD_PORT="$EPMD_PORT"
        ERL_EPMD_ADDRESS=127.0.0.1
        RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS="-kernel inet_dist_use_interface {127,0,0,1}"
        RABBITMQ_MNESIA_BASE="$dir/rabbit$i/mnesia"
        RABBITMQ_LOG_BASE="$dir/rabbit$i/log"
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins"
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq"
        RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        RABBITMQ_PID_FILE="$dir/rabbit$i/rabbitmq.pid"
    )
}

# rabbitmqctl_on DIR I ARGS...: rabbitmqctl against node I of the cluster
# in DIR (its output to DIR/rabbitmqctl.log); a stuck command fails after
# 2 min.
rabbitmqctl_on() {
    local dir=$1 i=$2
    shift 2
    rabbit_vars "$dir" "$i"
    env "${rvars[@]}" timeout 120 /usr/lib/rabbitmq/bin/rabbitmqctl -n "rabbit$i@localhost" "$@" \
        >> "$dir/rabbitmqctl.log" 2>&1
}

# start_cluster SYSTEM: starts a 3-node cluster of SYSTEM (spool, nats,
# rabbitmq), or one Spool node (spool-single), each process in a session of
# its own, with fresh data directories; sets $addr (the nodes' client
# addresses, comma-separated) and $system_arg (the harness's --system).
start_cluster() {
    local system=$1
    local dir="$work/cluster-$system"
    mkdir -p "$dir"
    server_dir=$dir
    system_arg=$system
    local i addrs=()
    case "$system" in
    spool-single)
        system_arg=spool
        port_free "$SPOOL_PORT"
        addr="127.0.0.1:$SPOOL_PORT"
        setsid "$work/bin/spool" server --data-dir "$dir/data" --listen "$addr" \
            --http-listen off --log-level warn > "$dir/server.log" 2>&1 &
        server_pids=($!)
        wait_port "$SPOOL_PORT" "$dir/server.log" $!
        ;;
    spool)
        # A secret of 64 hex characters, readable by its owner only.
        (umask 077 && od -An -N32 -tx1 /dev/urandom | tr -d ' \n' > "$dir/cluster.secret")
        local peers=()
        for i in $(seq 1 $NODES); do
            peers+=("$i=127.0.0.1:$((SPOOL_PORT + 10 * (i - 1) + 2))")
        done
        local peer_list
        peer_list=$(IFS=,; echo "${peers[*]}")
        for i in $(seq 1 $NODES); do
            local port=$((SPOOL_PORT + 10 * (i - 1)))
            port_free "$port"
            port_free "$((port + 2))"
            addrs+=("127.0.0.1:$port")
            setsid "$work/bin/spool" server --node-id "$i" --peers "$peer_list" \
                --cluster-secret-file "$dir/cluster.secret" --data-dir "$dir/node-$i" \
                --listen "127.0.0.1:$port" --http-listen off --log-level warn \
                > "$dir/node-$i.log" 2>&1 &
            server_pids+=($!)
        done
        for i in $(seq 1 $NODES); do
            wait_port "$((SPOOL_PORT + 10 * (i - 1)))" "$dir/node-$i.log" "${server_pids[$((i - 1))]}"
        done
        addr=$(IFS=,; echo "${addrs[*]}")
        # Until the nodes have met: every one alive in the metadata
        # leader's view (the harness then waits for each topic's leaders).
        for _ in $(seq 1 600); do
            if "$work/bin/spool" --addr "$addr" cluster status --json 2>/dev/null \
                | grep -c '"alive": *true' | grep -qx "$NODES"; then
                break
            fi
            sleep 0.1
        done
        if ! "$work/bin/spool" --addr "$addr" cluster status --json 2>/dev/null \
            | grep -c '"alive": *true' | grep -qx "$NODES"; then
            echo "the Spool nodes did not all meet within 60 s; their logs:" >&2
            tail -n 20 "$dir"/node-*.log >&2
            return 1
        fi
        ;;
    nats)
        local sync="" routes=()
        [ -n "$nats_sync_always" ] && sync="  sync_interval: always"
        for i in $(seq 1 $NODES); do
            routes+=("\"nats-route://127.0.0.1:$((NATS_CLUSTER_PORT + i - 1))\"")
        done
        local route_list
        route_list=$(IFS=,; echo "${routes[*]}")
        for i in $(seq 1 $NODES); do
            local port=$((NATS_PORT + i - 1))
            port_free "$port"
            port_free "$((NATS_CLUSTER_PORT + i - 1))"
            addrs+=("127.0.0.1:$port")
            printf 'server_name: "n%s"\nlisten: "127.0.0.1:%s"\njetstream {\n  store_dir: "%s"\n%s\n}\ncluster {\n  name: "spoolcmp"\n  listen: "127.0.0.1:%s"\n  routes: [%s]\n}\n' \
                "$i" "$port" "$dir/n$i/js" "$sync" "$((NATS_CLUSTER_PORT + i - 1))" "$route_list" \
                > "$dir/n$i.conf"
            setsid nats-server -c "$dir/n$i.conf" > "$dir/n$i.log" 2>&1 &
            server_pids+=($!)
        done
        for i in $(seq 1 $NODES); do
            wait_port "$((NATS_PORT + i - 1))" "$dir/n$i.log" "${server_pids[$((i - 1))]}"
        done
        # The harness retries creating its streams until JetStream has a
        # meta leader.
        addr=$(IFS=,; echo "${addrs[*]}")
        ;;
    rabbitmq)
        port_free "$EPMD_PORT"
        echo '[].' > "$dir/enabled_plugins"
        mkdir -p "$dir/home"
        (umask 077 && od -An -N16 -tx1 /dev/urandom | tr -d ' \n' | tr 'a-f0-9' 'A-J' \
            > "$dir/home/.erlang.cookie")
        chmod 400 "$dir/home/.erlang.cookie"
        epmd_started=1
        for i in $(seq 1 $NODES); do
            port_free "$((RABBITMQ_PORT + i - 1))"
            port_free "$((RABBITMQ_DIST_PORT + i - 1))"
            addrs+=("127.0.0.1:$((RABBITMQ_PORT + i - 1))")
            mkdir -p "$dir/rabbit$i"
            rabbit_vars "$dir" "$i"
            setsid env "${rvars[@]}" /usr/lib/rabbitmq/bin/rabbitmq-server \
                > "$dir/rabbit$i.log" 2>&1 &
            server_pids+=($!)
        done
        for i in $(seq 1 $NODES); do
            wait_port "$((RABBITMQ_PORT + i - 1))" "$dir/rabbit$i.log" "${server_pids[$((i - 1))]}"
        done
        for i in $(seq 2 $NODES); do
            say "rabbit$i@localhost joins rabbit1@localhost"
            if ! { rabbitmqctl_on "$dir" "$i" stop_app &&
                rabbitmqctl_on "$dir" "$i" join_cluster rabbit1@localhost &&
                rabbitmqctl_on "$dir" "$i" start_app; }; then
                echo "rabbit$i@localhost could not join the cluster:" >&2
                tail -30 "$dir/rabbitmqctl.log" >&2
                return 1
            fi
        done
        rabbitmqctl_on "$dir" 1 await_online_nodes "$NODES"
        for i in $(seq 1 $NODES); do
            wait_port "$((RABBITMQ_PORT + i - 1))" "$dir/rabbit$i.log" "${server_pids[$((i - 1))]}"
        done
        rabbitmqctl_on "$dir" 1 cluster_status
        addr=$(IFS=,; echo "${addrs[*]}")
        ;;
    *)
        echo "unknown system $system (with --cluster: spool, spool-single, nats, rabbitmq)" >&2
        return 1
        ;;
    esac
}

# ---- versions --------------------------------------------------------------
{
    echo "spool: $(cd "$root" && git rev-parse --short HEAD 2>/dev/null || echo '?') (spool-client path dependency)"
    [ -n "${SPOOL_BIN:-}" ] && echo "spool server: $SPOOL_BIN ($("$work/bin/spool" --version), built $(date -u -r "$SPOOL_BIN" '+%F %T UTC'))"
    if wants redis; then echo "redis-server: $(redis-server --version | sed 's/Redis server //')"; fi
    if wants nats; then echo "nats-server: $(nats-server --version)"; fi
    if wants rabbitmq; then
        echo "rabbitmq-server: $(dpkg-query -W -f '${Version}' rabbitmq-server 2>/dev/null), erlang: $(dpkg-query -W -f '${Version}' erlang-base 2>/dev/null)"
    fi
    for crate in redis async-nats lapin; do
        printf 'crate %s: ' "$crate"
        awk -v n="$crate" '$0 == "name = \"" n "\"" {getline; gsub(/version = |"/, ""); print; exit}' "$here/Cargo.lock"
    done
} | tee "$work/versions.txt" >&2

# ---- run -------------------------------------------------------------------
IFS=, read -r -a tier_list <<< "$tiers"
IFS=, read -r -a system_list <<< "$systems"
if [ -n "$cluster" ]; then
    # Publish and consume (100 B, 1 KiB) once per system, on one cluster.
    for system in "${system_list[@]}"; do
        say "$system cluster: publish, consume — $(uptime | sed 's/.*load/load/')"
        start_cluster "$system"
        "$work/bin/spool-compare" run --cluster --system "$system_arg" --addr "$addr" \
            --tier durable --only publish,consume $quick $nats_sync_always >> "$results"
        stop_server
    done
    # End-to-end at 5,000 msgs/s in rounds, the systems taking turns, each
    # round on a fresh cluster (see the single-server rounds below).
    for round in $(seq 1 "$rounds"); do
        for system in "${system_list[@]}"; do
            say "$system cluster: end-to-end, round $round of $rounds — $(uptime | sed 's/.*load/load/')"
            start_cluster "$system"
            "$work/bin/spool-compare" run --cluster --system "$system_arg" --addr "$addr" \
                --tier durable --only end-to-end $quick $nats_sync_always >> "$results"
            stop_server
        done
    done
    echo
    cat "$work/versions.txt"
    echo
    "$work/bin/spool-compare" table "$results"
    exit 0
fi
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
