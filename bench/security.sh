#!/usr/bin/env bash
# What TLS and ACLs cost: the same load against three 3-node raftkv clusters
# on loopback, side by side in one run — plaintext, mutual TLS (HTTPS to
# clients too), and ACLs on (default deny; the load carries a token whose
# policy grants write on every key, so every request is authorised by the
# rule engine, not waved through as a management token would be).
#
#   bench/security.sh                        # 90/10 mix, 64 clients, 15 s, 2 rounds
#   ROUNDS=3 DURATION=10s CLIENTS=16 bench/security.sh
#
# Each round runs the three in a rotated order; the table shows each run's
# throughput and its ratio to the plaintext run of the same round.
set -euo pipefail
cd "$(dirname "$0")"
DURATION=${DURATION:-15s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-64}
MIX=${MIX:-read=90,write=10}
ROUNDS=${ROUNDS:-2}
OUT=${OUT:-$(mktemp -d -t raftkv-security-XXXX)}
mkdir -p "$OUT"

. ./lib.sh
(cd "$DATA" && "$BIN/raftkv" tls ca create >/dev/null &&
  for n in t1 t2 t3; do "$BIN/raftkv" tls cert create --node $n --host 127.0.0.1 >/dev/null; done &&
  "$BIN/raftkv" tls cert create --node bench --client >/dev/null)
MGMT=4d1f0a5e-8c2b-4f6a-9e3d-2b7c1a0f5e9d

start_raftkv plain 2710
start_raftkv tls 2720 -tls-ca "$DATA/raftkv-ca.pem" -tls-cert "$DATA/t{i}.pem" -tls-key "$DATA/t{i}-key.pem"
start_raftkv acl 2730 -acl-default-policy deny -acl-initial-management $MGMT -acl-token $MGMT

PLAIN=(--endpoints 127.0.0.1:27101,127.0.0.1:27102,127.0.0.1:27103)
TLS_FLAGS=(--cacert "$DATA/raftkv-ca.pem" --cert "$DATA/bench.pem" --key "$DATA/bench-key.pem")
TLS=(--endpoints 127.0.0.1:27201,127.0.0.1:27202,127.0.0.1:27203 "${TLS_FLAGS[@]}")
ACL=(--endpoints 127.0.0.1:27301,127.0.0.1:27302,127.0.0.1:27303)
wait_members Voter 127.0.0.1:27101,127.0.0.1:27102,127.0.0.1:27103
wait_members Voter 127.0.0.1:27201,127.0.0.1:27202,127.0.0.1:27203 "${TLS_FLAGS[@]}"
wait_members Voter 127.0.0.1:27301,127.0.0.1:27302,127.0.0.1:27303 --token $MGMT
"$BIN/raftkv" "${ACL[@]}" --token $MGMT acl policy create --name bench --rules 'key_prefix "" { policy = "write" }' >/dev/null
TOKEN=$("$BIN/raftkv" "${ACL[@]}" --token $MGMT -o json acl token create --policy-name bench |
  sed -n 's/.*"SecretID": "\(.*\)".*/\1/p')
ACL+=(--token "$TOKEN")

run() { # name round
  local -n args=$1
  "$BIN/raftkv" "${args[@]}" -o json bench --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP" \
    --mix "$MIX" --value-size 256 >"$OUT/$1-$2.json" 2>/dev/null
}
ops() { sed -n 's/^  "Ops": \([0-9]*\),*/\1/p' "$OUT/$1-$2.json"; }

echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, $MIX, $CLIENTS clients, $DURATION per run; results in $OUT"
printf '%-6s %12s %12s %12s %10s %10s\n' round plain tls acl tls/plain acl/plain
orders=("PLAIN TLS ACL" "TLS ACL PLAIN" "ACL PLAIN TLS")
for r in $(seq 1 "$ROUNDS"); do
  for sys in ${orders[$(((r - 1) % 3))]}; do echo "round $r: $sys..." >&2; run "$sys" "$r"; done
  p=$(ops PLAIN "$r"); t=$(ops TLS "$r"); a=$(ops ACL "$r")
  printf '%-6s %12s %12s %12s %10s %10s\n' "$r" "$p" "$t" "$a" \
    "$(awk -v a="$t" -v b="$p" 'BEGIN{printf "%.3f", a/b}')" "$(awk -v a="$a" -v b="$p" 'BEGIN{printf "%.3f", a/b}')"
done
