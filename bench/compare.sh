#!/usr/bin/env bash
# Side by side: raftkv vs etcd 3.4 on this machine, same load generator.
#
#   bench/compare.sh              # 10 s per run
#   DURATION=30s bench/compare.sh
#   REPEAT=3 CLIENTS=64 bench/compare.sh   # three back-to-back pairs per cell, medians
#
# Starts a 3-member etcd and a 3-node raftkv cluster on loopback, each in
# fresh temp dirs and both durable (fsync on commit: etcd's WAL, raftkv's
# raft-boltdb log), runs write-only, linearizable-read-only and 90/10 mixes
# at 1, 16 and 64 clients with 256-byte values, alternating the systems, and
# prints a table of raftkv/etcd ratios. Results (JSON) stay in $OUT.
# With REPEAT=n each cell runs n pairs, alternating which system goes first,
# and the table shows medians and the range of the per-pair ratios.
set -euo pipefail
cd "$(dirname "$0")"
DURATION=${DURATION:-10s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-"1 16 64"}
REPEAT=${REPEAT:-1}
OUT=${OUT:-$(mktemp -d -t raftkv-compare-XXXX)}
mkdir -p "$OUT"

if ! command -v etcd >/dev/null; then
  echo "installing Debian's etcd-server..."
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
BIN=$(mktemp -d -t raftkv-bin-XXXX)
(cd .. && go build -o "$BIN/raftkvd" ./cmd/raftkvd && go build -o "$BIN/raftkv" ./cmd/raftkv)
go build -o "$BIN/kvbench" ./cmd/kvbench

DATA=$(mktemp -d -t raftkv-compare-data-XXXX)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DATA" "$BIN"; }
trap cleanup EXIT

# Ports: etcd 23791-23793 (clients) and 23801-23803 (peers); raftkv 27001-27003.
CLUSTER=e1=http://127.0.0.1:23801,e2=http://127.0.0.1:23802,e3=http://127.0.0.1:23803
for i in 1 2 3; do
  etcd --name e$i --data-dir "$DATA/etcd$i" \
    --listen-client-urls http://127.0.0.1:2379$i --advertise-client-urls http://127.0.0.1:2379$i \
    --listen-peer-urls http://127.0.0.1:2380$i --initial-advertise-peer-urls http://127.0.0.1:2380$i \
    --initial-cluster "$CLUSTER" --initial-cluster-state new --initial-cluster-token compare \
    --logger zap --log-level error >"$DATA/etcd$i.log" 2>&1 &
  PIDS+=($!)
done
for i in 1 2 3; do
  if [ "$i" = 1 ]; then extra=(-bootstrap); else extra=(-join 127.0.0.1:27001); fi
  "$BIN/raftkvd" -id n$i -addr 127.0.0.1:2700$i -data-dir "$DATA/raftkv$i" -log-level error "${extra[@]}" 2>"$DATA/raftkv$i.log" &
  PIDS+=($!)
done
ETCD=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793
RAFTKV=127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003
for _ in $(seq 1 100); do
  if "$BIN/raftkv" --endpoints $RAFTKV --timeout 1s put compare/ready 1 >/dev/null 2>&1 &&
     "$BIN/kvbench" etcd --endpoints $ETCD --clients 1 --duration 100ms --warmup 0s >/dev/null 2>&1; then
    break
  fi
  sleep 0.2
done

run() { # system workload clients mix run
  local common=(--clients "$3" --duration "$DURATION" --warmup "$WARMUP" --mix "$4" --value-size 256)
  local out="$OUT/$1-$2-$3-$5.json"
  if [ "$1" = raftkv ]; then
    "$BIN/raftkv" --endpoints $RAFTKV -o json bench "${common[@]}" >"$out" 2>/dev/null
  else
    "$BIN/kvbench" etcd --endpoints $ETCD -o json "${common[@]}" >"$out" 2>/dev/null
  fi
}
turn=0
for workload in write:write=100 read:read=100 mix90_10:read=90,write=10; do
  name=${workload%%:*}; mix=${workload#*:}
  for c in $CLIENTS; do
    for r in $(seq 1 "$REPEAT"); do
      if [ $((turn % 2)) = 0 ]; then order="raftkv etcd"; else order="etcd raftkv"; fi
      for sys in $order; do echo "$sys $name $c clients (run $r)..." >&2; run "$sys" "$name" "$c" "$mix" "$r"; done
      turn=$((turn + 1))
    done
  done
done
echo
echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev) vs $(etcd --version | head -1), $(nproc) cores, $DURATION per run, $REPEAT run(s) per cell, results in $OUT"
echo
"$BIN/kvbench" table "$OUT"
