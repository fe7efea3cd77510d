# Sourced by the bench scripts (from bench/): builds raftkvd, raftkv and
# kvbench into $BIN, makes $DATA, and on exit stops every process in PIDS
# and removes both.
BIN=$(mktemp -d -t raftkv-bin-XXXX)
(cd .. && go build -o "$BIN/raftkvd" ./cmd/raftkvd && go build -o "$BIN/raftkv" ./cmd/raftkv)
go build -o "$BIN/kvbench" ./cmd/kvbench
DATA=$(mktemp -d -t raftkv-bench-data-XXXX)
PIDS=()
cleanup() { kill "${PIDS[@]}" 2>/dev/null || true; wait 2>/dev/null || true; rm -rf "$DATA" "$BIN"; }
trap cleanup EXIT

# start_raftkv NAME PORT-PREFIX [raftkvd flags...]: three nodes n1..n3 on
# 127.0.0.1:<PORT-PREFIX>1..3 (n1 bootstraps, the others join it), data in
# $DATA/NAME1..3, the binary $RAFTKVD (default: the one just built). "{i}"
# in a flag becomes the node's number. Their PIDs go to PIDS and NODE_PIDS.
# Started again with the same arguments, the nodes restart on their data.
start_raftkv() {
  local name=$1 prefix=$2 i
  shift 2
  NODE_PIDS=()
  for i in 1 2 3; do
    if [ "$i" = 1 ]; then join=(-bootstrap); else join=(-join "127.0.0.1:${prefix}1"); fi
    "${RAFTKVD:-$BIN/raftkvd}" -id "n$i" -addr "127.0.0.1:$prefix$i" -data-dir "$DATA/$name$i" -log-level error \
      -server-stabilization-time 1s "${join[@]}" "${@//\{i\}/$i}" 2>>"$DATA/$name$i.log" &
    PIDS+=($!)
    NODE_PIDS+=($!)
  done
}

# members_are FIELD ENDPOINTS [raftkv flags...]: whether `raftkv members`
# shows FIELD (Voter, Healthy) true for all three servers (the lines
# indented as a server's field: the report has a Healthy of its own).
members_are() {
  local field=$1 ep=$2
  shift 2
  [ "$("$BIN/raftkv" --endpoints "$ep" "$@" -o json members 2>/dev/null | grep -c "^      \"$field\": true")" = 3 ]
}

# wait_members FIELD ENDPOINTS [raftkv flags...]: members_are, waiting up to 60 s.
wait_members() {
  for _ in $(seq 1 300); do
    members_are "$@" && return 0
    sleep 0.2
  done
  echo "cluster at $2: not every member $1 after 60 s" >&2
  return 1
}

# ab_rounds EP_A EP_B [raftkv bench flags...]: for each mix in MIXES and
# client count in CLIENTS, ROUNDS rounds of the same `raftkv bench` load
# (DURATION, WARMUP, 256-byte values, the flags given) at cluster A and at
# cluster B, alternating which goes first. Prints each round's ops/s,
# p50/p99, errors and B/A throughput ratio, then per cell the medians and
# the lowest and highest ratio. Each run's JSON is $OUT/SYS-MIX-C-ROUND.json,
# its stderr .stderr; $OUT/bench.stderr collects what in them is not the
# per-second progress.
# If a function during_run is defined, `during_run SYS EP FILE` (FILE: the
# run's path without .json) runs in the background during every run, for
# both systems alike.
ab_rounds() {
  local ep_a=$1 ep_b=$2 turn=0 mix c r sys ep order fa fb a b ratio hook
  shift 2
  printf '%-22s %-7s %-5s %9s %9s %7s %7s %8s %8s %5s %5s %7s\n' mix clients round A-ops/s B-ops/s A-p50 B-p50 A-p99 B-p99 A-err B-err B/A
  for mix in $MIXES; do
    for c in $CLIENTS; do
      local ratios=() as=() bs=() pa=() pb=()
      for r in $(seq 1 "$ROUNDS"); do
        if [ $((turn % 2)) = 0 ]; then order="A B"; else order="B A"; fi
        turn=$((turn + 1))
        for sys in $order; do
          ep=$ep_a
          [ "$sys" = B ] && ep=$ep_b
          hook=
          if declare -F during_run >/dev/null; then
            during_run "$sys" "$ep" "$OUT/$sys-$mix-$c-$r" &
            hook=$!
          fi
          "$BIN/raftkv" --endpoints "$ep" -o json bench --clients "$c" --duration "$DURATION" --warmup "$WARMUP" \
            --mix "$mix" --value-size 256 "$@" >"$OUT/$sys-$mix-$c-$r.json" 2>"$OUT/$sys-$mix-$c-$r.stderr"
          # what is not the per-second progress, for the caller to show
          grep -Ev '^ *[0-9]+s +[0-9]+ ops/s' "$OUT/$sys-$mix-$c-$r.stderr" | sed "s|^|$sys $mix $c $r: |" >>"$OUT/bench.stderr" || true
          if [ -n "$hook" ]; then wait "$hook" || true; fi
        done
        fa="$OUT/A-$mix-$c-$r.json"
        fb="$OUT/B-$mix-$c-$r.json"
        a=$(field "$fa" OpsPerSecond)
        b=$(field "$fb" OpsPerSecond)
        ratio=$(awk -v a="$a" -v b="$b" 'BEGIN{printf "%.3f", b/a}')
        ratios+=("$ratio") as+=("$a") bs+=("$b") pa+=("$(field "$fa" P99)") pb+=("$(field "$fb" P99)")
        printf '%-22s %-7s %-5s %9.0f %9.0f %7s %7s %8s %8s %5s %5s %7s\n' "$mix" "$c" "$r" "$a" "$b" \
          "$(field "$fa" P50)" "$(field "$fb" P50)" "${pa[-1]}" "${pb[-1]}" "$(errors "$fa")" "$(errors "$fb")" "$ratio"
      done
      printf '%-22s %-7s median A %.0f ops/s, B %.0f ops/s, B/A %s (range %s–%s); p99 ms A %s, B %s\n' "$mix" "$c" \
        "$(median "${as[@]}")" "$(median "${bs[@]}")" "$(median "${ratios[@]}")" \
        "$(printf '%s\n' "${ratios[@]}" | sort -g | head -1)" "$(printf '%s\n' "${ratios[@]}" | sort -g | tail -1)" \
        "$(median "${pa[@]}")" "$(median "${pb[@]}")"
    done
  done
}

# field FILE NAME: the first number NAME in a `raftkv bench -o json` file
# (OpsPerSecond, Ops, P50, P99...).
field() { sed -n "s/^ \{2,4\}\"$2\": \([0-9.e+-]*\),*$/\1/p" "$1" | head -1; }
# errors FILE: the run's failed requests, all kinds.
errors() { awk '/^  "Errors": \{$/ {on = 1; next} on && /^  }/ {exit} on {gsub(/[^0-9]/, "", $2); n += $2} END {print n + 0}' "$1"; }
# median NUMBERS...
median() { printf '%s\n' "$@" | sort -g | awk '{v[NR] = $1} END {if (NR % 2) print v[(NR + 1) / 2]; else printf "%.3f\n", (v[NR / 2] + v[NR / 2 + 1]) / 2}'; }
