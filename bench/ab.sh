#!/usr/bin/env bash
# A/B: two 3-node raftkv clusters on loopback that differ only by raftkvd
# flags, the same load against each, alternating which goes first.
#
#   A="-raft-log-store boltdb" B="-raft-log-store wal" bench/ab.sh
#   A=... B=... MIXES="write=100" CLIENTS="1 64" ROUNDS=3 DURATION=8s bench/ab.sh
#   BIN_A=/path/to/old/raftkvd A= B= bench/ab.sh     # two builds, same flags
#
# Prints, per workload and client count, each round's throughput, p50/p99
# latency and the B/A throughput ratio, then the median ratio.
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

field() { sed -n "s/^    \"$2\": \([0-9.]*\),*/\1/p" "$1" | head -1; }
ops() { sed -n 's/^  "Ops": \([0-9]*\),*/\1/p' "$1"; }

echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, $DURATION per run; A: ${A:-(defaults)} ${BIN_A:+[$BIN_A]}; B: ${B:-(defaults)}; results in $OUT"
printf '%-22s %-7s %-5s %10s %10s %8s %8s %8s %8s %7s\n' mix clients round A-ops B-ops A-p50 B-p50 A-p99 B-p99 B/A
turn=0
for mix in $MIXES; do
  for c in $CLIENTS; do
    ratios=()
    for r in $(seq 1 "$ROUNDS"); do
      if [ $((turn % 2)) = 0 ]; then order="A B"; else order="B A"; fi
      turn=$((turn + 1))
      for sys in $order; do
        ep=$EP_A; [ "$sys" = B ] && ep=$EP_B
        "$BIN/raftkv" --endpoints $ep -o json bench --clients "$c" --duration "$DURATION" --warmup "$WARMUP" \
          --mix "$mix" --value-size 256 >"$OUT/$sys-$mix-$c-$r.json" 2>/dev/null
      done
      fa="$OUT/A-$mix-$c-$r.json"; fb="$OUT/B-$mix-$c-$r.json"
      a=$(ops "$fa"); b=$(ops "$fb")
      ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
      ratios+=("$ratio")
      printf '%-22s %-7s %-5s %10s %10s %8s %8s %8s %8s %7s\n' "$mix" "$c" "$r" "$a" "$b" \
        "$(field "$fa" P50)" "$(field "$fb" P50)" "$(field "$fa" P99)" "$(field "$fb" P99)" "$ratio"
    done
    printf '%-22s %-7s median B/A %s (range %s–%s)\n' "$mix" "$c" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | awk '{v[NR]=$1} END{if (NR%2) print v[(NR+1)/2]; else printf "%.3f\n", (v[NR/2]+v[NR/2+1])/2}')" \
      "$(printf '%s\n' "${ratios[@]}" | sort -n | head -1)" "$(printf '%s\n' "${ratios[@]}" | sort -n | tail -1)"
  done
done
