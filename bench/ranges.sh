#!/usr/bin/env bash
# One range against RANGES ranges (default 8): two 3-node raftkv clusters on
# loopback with the same raftkvd flags (FLAGS); B's keyspace is split into
# RANGES ranges before the load (`raftkv range split bench/<p>/`, p = 1 ..
# RANGES-1, each range its own raft group on the same three nodes), A stays
# one range. Then the same load at both, alternating which goes first
# (ab_rounds in lib.sh), with the keys spread over RANGES prefixes
# bench/<p>/ (`raftkv bench --key-prefixes`) at both, so that each of B's
# ranges gets 1/RANGES of the keys and A gets the same keys. Keys are kept
# between runs (--keep) at both: the 90/10 mix reads keys the writes left.
#
#   bench/ranges.sh
#   MIXES="write=100" CLIENTS="1 64 256" ROUNDS=3 DURATION=8s bench/ranges.sh
#   RANGES=4 FLAGS="-raft-log-store boltdb" bench/ranges.sh
#
# Prints `raftkv range ls` of both clusters before the load, the rounds and
# the medians, `range ls` taken in the middle of the last round of each
# mix at the highest client count and after the load (leader, keys and
# writes/s of every range), and each node's VmRSS (and peak, VmHWM),
# goroutines, CPU time and raft log appends (fsyncs) and entries before and
# after the load.
set -euo pipefail
cd "$(dirname "$0")"
RANGES=${RANGES:-8}
FLAGS=${FLAGS:-}
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-"1 64 256"}
MIXES=${MIXES:-"write=100 read=90,write=10"}
ROUNDS=${ROUNDS:-3}
OUT=${OUT:-$(mktemp -d -t raftkv-ranges-XXXX)}
mkdir -p "$OUT"

. ./lib.sh
# shellcheck disable=SC2086
start_raftkv A 2740 $FLAGS
PIDS_A=("${NODE_PIDS[@]}")
# shellcheck disable=SC2086
start_raftkv B 2750 $FLAGS
PIDS_B=("${NODE_PIDS[@]}")
EP_A=127.0.0.1:27401,127.0.0.1:27402,127.0.0.1:27403
EP_B=127.0.0.1:27501,127.0.0.1:27502,127.0.0.1:27503
wait_members Voter $EP_A
wait_members Voter $EP_B

rk() { "$BIN/raftkv" --endpoints "$@"; }
# ranges_led EP N: whether the cluster has N ranges, each with a leader.
ranges_led() {
  local js
  js=$(rk "$1" -o json range ls 2>/dev/null) || return 1
  [ "$(grep -c '^    "ID":' <<<"$js")" = "$2" ] && ! grep -q '^    "Leader": ""' <<<"$js"
}
wait_ranges() {
  for _ in $(seq 1 300); do
    ranges_led "$@" && return 0
    sleep 0.2
  done
  echo "cluster at $1: not $2 ranges with a leader each after 60 s:" >&2
  rk "$1" range ls >&2 || true
  return 1
}
# nodes LABEL PORT-PREFIX PIDS...: each node's VmRSS and peak VmHWM (MiB,
# /proc/PID/status), goroutines, CPU time used since it started (user +
# system, /proc/PID/stat), and its raft logs' appends and entries since it
# started, all ranges' WALs together (raftkv_raft_wal_log_*: raft-wal
# fsyncs once per append, so entries per append is the writes per fsync).
nodes() {
  local label=$1 prefix=$2 i=1 pid m cpu
  shift 2
  for pid in "$@"; do
    m=$(curl -fsS "http://127.0.0.1:$prefix$i/metrics" 2>/dev/null |
      awk '$1 == "go_goroutines" {g = $2} $1 == "raftkv_raft_wal_log_appends" {a = $2} $1 == "raftkv_raft_wal_log_entries_written" {e = $2}
        END {printf "goroutines %4s   WAL appends %7d, %8d entries, %5.2f per append", g, a, e, a ? e / a : 0}')
    cpu=$(awk -v t="$(getconf CLK_TCK)" '{printf "%.1f", ($14 + $15) / t}' "/proc/$pid/stat")
    awk -v l="$label" -v n="$i" -v m="$m" -v cpu="$cpu" '/^VmRSS:/ {r = $2} /^VmHWM:/ {h = $2}
      END {printf "%-22s n%d   RSS %4d MiB   peak %4d MiB   CPU %6s s   %s\n", l, n, r / 1024, h / 1024, cpu, m}' "/proc/$pid/status"
    i=$((i + 1))
  done
}
# seconds DURATION: a Go duration of the forms raftkv bench takes here (8s, 500ms, 1m) in seconds.
seconds() { awk -v d="$1" 'BEGIN {n = d + 0; if (d ~ /ms$/) n /= 1000; else if (d ~ /m$/) n *= 60; print n}'; }
MID=$(awk -v w="$(seconds "$WARMUP")" -v d="$(seconds "$DURATION")" 'BEGIN {print w + d / 2}')
# during_run (called by ab_rounds): `range ls` in the middle of every run, of A and B alike.
during_run() {
  sleep "$MID"
  rk "$2" range ls >"$3.ranges" 2>&1 || true
}

top=$((RANGES - 1))
width=${#top} # the prefixes' zero-padded width, as loadgen.KeyIn writes them
for p in $(seq 1 $((RANGES - 1))); do
  rk $EP_B range split "$(printf 'bench/%0*d/' "$width" "$p")" >/dev/null
done
wait_ranges $EP_A 1
wait_ranges $EP_B "$RANGES"

echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, $DURATION per run after $WARMUP warm-up; A: 1 range; B: $RANGES ranges; raftkvd flags: ${FLAGS:-(defaults)}; results in $OUT"
echo "== range ls before the load"
echo "A:"
rk $EP_A range ls
echo "B:"
rk $EP_B range ls
nodes "A idle" 2740 "${PIDS_A[@]}"
nodes "B idle, split" 2750 "${PIDS_B[@]}"
echo

ab_rounds $EP_A $EP_B --key-prefixes "$RANGES" --keep

last=${CLIENTS##* }
for mix in $MIXES; do
  for sys in A B; do
    echo
    echo "== $sys: range ls in the middle of $mix, $last clients, round $ROUNDS"
    cat "$OUT/$sys-$mix-$last-$ROUNDS.ranges"
  done
done
echo
echo "== range ls after the load"
for sys in A B; do
  ep=$EP_A
  [ "$sys" = B ] && ep=$EP_B
  echo "$sys:"
  rk $ep range ls | tee "$OUT/$sys-after.ranges"
  echo "leaders:$(awk 'NR > 1 {print $6}' "$OUT/$sys-after.ranges" | sort | uniq -c | awk '{printf " %s×%d", $2, $1}')"
done
echo
nodes "A after the load" 2740 "${PIDS_A[@]}"
nodes "B after the load" 2750 "${PIDS_B[@]}"
for sys in A B; do
  cat "$OUT/$sys"-*-[0-9]*.json | awk -v s="$sys" '/^  "Ops": / {n += $2} END {printf "%s: %d ops measured in all runs\n", s, n}'
done
if [ -s "$OUT/bench.stderr" ]; then
  echo
  echo "== raftkv bench's stderr"
  cat "$OUT/bench.stderr"
fi
