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
. ./lib.sh
# shellcheck disable=SC2086
start_raftkv n 2760 $FLAGS
EP=127.0.0.1:27601,127.0.0.1:27602,127.0.0.1:27603
wait_members Voter $EP
leader=$("$BIN/raftkv" --endpoints $EP leader)
followers=$(echo "$EP" | tr , '\n' | grep -v "^$leader$" | paste -sd,)
entry=${followers%%,*}
echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, flags: ${FLAGS:-(defaults)}"
"$BIN/kvbench" budget --entry "$entry" --leader "$leader" --followers "$followers" --duration "$DURATION"
