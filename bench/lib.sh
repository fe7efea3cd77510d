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
