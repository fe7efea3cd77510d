#!/usr/bin/env bash
# One write's latency budget: a 3-node cluster on loopback, one client
# writing 256-byte values through a follower, and where the time went by
# each node's own metrics (kvbench budget). FLAGS are extra raftkvd flags.
#
#   bench/budget.sh                                   # the defaults
#   FLAGS="-raft-log-store boltdb" bench/budget.sh    # the same, on raft-boltdb
set -euo pipefail
cd "$(dirname "$0")"
FLAGS=${FLAGS:-}
DURATION=${DURATION:-10s}
BIN=$(mktemp -d -t raftkv-bin-XXXX)
(cd .. && go build -o "$BIN/raftkvd" ./cmd/raftkvd && go build -o "$BIN/raftkv" ./cmd/raftkv)
go build -o "$BIN/kvbench" ./cmd/kvbench
DATA=$(mktemp -d -t raftkv-budget-XXXX)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DATA" "$BIN"; }
trap cleanup EXIT
for i in 1 2 3; do
  if [ "$i" = 1 ]; then join=(-bootstrap); else join=(-join 127.0.0.1:27601); fi
  # shellcheck disable=SC2086
  "$BIN/raftkvd" -id n$i -addr 127.0.0.1:2760$i -data-dir "$DATA/n$i" -log-level error \
    -server-stabilization-time 1s "${join[@]}" $FLAGS 2>"$DATA/n$i.log" &
  PIDS+=($!)
done
EP=127.0.0.1:27601,127.0.0.1:27602,127.0.0.1:27603
for _ in $(seq 1 150); do
  if [ "$("$BIN/raftkv" --endpoints $EP -o json members 2>/dev/null | grep -c '"Voter": true')" = 3 ]; then break; fi
  sleep 0.2
done
leader=$("$BIN/raftkv" --endpoints $EP leader)
followers=$(echo "$EP" | tr , '\n' | grep -v "^$leader$" | paste -sd,)
entry=${followers%%,*}
echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, flags: ${FLAGS:-(defaults)}"
"$BIN/kvbench" budget --entry "$entry" --leader "$leader" --followers "$followers" --duration "$DURATION"
