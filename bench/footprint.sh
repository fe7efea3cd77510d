#!/usr/bin/env bash
# Memory and disk per node holding KEYS keys of 256-byte values: raftkv and
# etcd 3.6 (built and cached by compare.sh), 3 members each on loopback,
# loaded by the same writer (kvbench fill: transactions of 64 puts), one
# system at a time. After loading, each cluster idles SETTLE (compactions,
# snapshots), then the RSS of every member (ps) and the size of its data
# dir (du) are read, and again after a restart of every member (what a node
# needs to start and serve the data, without what loading left behind).
#
#   bench/footprint.sh                  # 1,000,000 keys
#   KEYS=200000 bench/footprint.sh
set -euo pipefail
cd "$(dirname "$0")"
KEYS=${KEYS:-1000000}
SETTLE=${SETTLE:-20}
ETCD36_VERSION=${ETCD36_VERSION:-v3.6.5}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/raftkv-bench
ETCD36=$CACHE/etcd-$ETCD36_VERSION
if [ ! -x "$ETCD36" ]; then
  PEERS=etcd36 WORKLOADS=write CLIENTS=1 DURATION=1s WARMUP=0s ./compare.sh >/dev/null
fi
. ./lib.sh

start_etcd() { # state: new or existing
  local cluster=""
  for i in 1 2 3; do cluster+="${cluster:+,}e$i=http://127.0.0.1:2981$i"; done
  for i in 1 2 3; do
    "$ETCD36" --name e$i --data-dir "$DATA/etcd$i" \
      --listen-client-urls http://127.0.0.1:2980$i --advertise-client-urls http://127.0.0.1:2980$i \
      --listen-peer-urls http://127.0.0.1:2981$i --initial-advertise-peer-urls http://127.0.0.1:2981$i \
      --initial-cluster "$cluster" --initial-cluster-state "$1" --initial-cluster-token footprint \
      --logger zap --log-level error >>"$DATA/etcd$i.log" 2>&1 &
    EPIDS[$i]=$!
    PIDS+=($!)
  done
}
stop() { kill "$@"; wait "$@" 2>/dev/null || true; }
wait_etcd() {
  for _ in $(seq 1 300); do
    "$BIN/kvbench" etcd --endpoints 127.0.0.1:29801 --clients 1 --duration 100ms --warmup 0s --mix read=100 >/dev/null 2>&1 && return
    sleep 0.2
  done
}
report() { # system label pid...
  local sys=$1 label=$2; shift 2
  local i=1
  for pid in "$@"; do
    rss=$(ps -o rss= -p "$pid" | tr -d ' ')
    dir=$DATA/$sys$i
    printf '%-8s %-16s node %d   RSS %6d MiB   disk %6d MiB\n' "$sys" "$label" "$i" $((rss / 1024)) $(($(du -sk "$dir" | cut -f1) / 1024))
    i=$((i + 1))
  done
}

echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev) and etcd $ETCD36_VERSION, $KEYS keys of 256 bytes, $(nproc) cores"
declare -a EPIDS
start_raftkv raftkv 2900
wait_members Healthy 127.0.0.1:29001,127.0.0.1:29002,127.0.0.1:29003
"$BIN/kvbench" fill --system raftkv --endpoints 127.0.0.1:29001,127.0.0.1:29002,127.0.0.1:29003 --keys "$KEYS" | tail -1
sleep "$SETTLE"
report raftkv "loaded" "${NODE_PIDS[@]}"
stop "${NODE_PIDS[@]}"
start_raftkv raftkv 2900
wait_members Healthy 127.0.0.1:29001,127.0.0.1:29002,127.0.0.1:29003
sleep "$SETTLE"
report raftkv "restarted" "${NODE_PIDS[@]}"
stop "${NODE_PIDS[@]}"

start_etcd new
wait_etcd
"$BIN/kvbench" fill --system etcd --endpoints 127.0.0.1:29801,127.0.0.1:29802,127.0.0.1:29803 --keys "$KEYS" | tail -1
sleep "$SETTLE"
report etcd "loaded" "${EPIDS[1]}" "${EPIDS[2]}" "${EPIDS[3]}"
stop "${EPIDS[1]}" "${EPIDS[2]}" "${EPIDS[3]}"
start_etcd existing
wait_etcd
sleep "$SETTLE"
report etcd "restarted" "${EPIDS[1]}" "${EPIDS[2]}" "${EPIDS[3]}"
stop "${EPIDS[1]}" "${EPIDS[2]}" "${EPIDS[3]}"
