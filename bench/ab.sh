#!/usr/bin/env bash
# A/B: two 3-node raftkv clusters on loopback that differ only by raftkvd
# flags, the same load against each, alternating which goes first.
#
#   A="-raft-log-store boltdb" B="-raft-log-store wal" bench/ab.sh
#   A=... B=... MIXES="write=100" CLIENTS="1 64" ROUNDS=3 DURATION=8s bench/ab.sh
#   BIN_A=/path/to/old/raftkvd A= B= bench/ab.sh     # two builds, same flags
#
# Prints, per workload and client count, each round's throughput, p50/p99
# latency, errors and the B/A throughput ratio, then the medians
# (ab_rounds in lib.sh; bench/ranges.sh uses it too).
set -euo pipefail
cd "$(dirname "$0")"
A=${A:-}
B=${B:-}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-"1 64"}
MIXES=${MIXES:-"write=100 read=90,write=10"}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$(mktemp -d -t raftkv-ab-XXXX)}
mkdir -p "$OUT"

. ./lib.sh
BIN_A=${BIN_A:-$BIN/raftkvd}
BIN_B=${BIN_B:-$BIN/raftkvd}
# shellcheck disable=SC2086
RAFTKVD=$BIN_A start_raftkv A 2740 $A
# shellcheck disable=SC2086
RAFTKVD=$BIN_B start_raftkv B 2750 $B
EP_A=127.0.0.1:27401,127.0.0.1:27402,127.0.0.1:27403
EP_B=127.0.0.1:27501,127.0.0.1:27502,127.0.0.1:27503
wait_members Voter $EP_A
wait_members Voter $EP_B

echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, $DURATION per run; A: ${A:-(defaults)} ${BIN_A:+[$BIN_A]}; B: ${B:-(defaults)}; results in $OUT"
ab_rounds $EP_A $EP_B
