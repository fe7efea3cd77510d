#!/usr/bin/env bash
# Side by side on this machine, same load generator: raftkv against etcd 3.6
# (the current etcd, built from its server module and cached), Debian's etcd
# 3.4 and, when a `consul` binary is on PATH, Consul (3 servers, reads with
# ?consistent).
#
#   bench/compare.sh                                   # every workload at 1, 64, 256, 1000 clients
#   REPEAT=3 bench/compare.sh                          # three alternating pairs per cell, medians
#   WORKLOADS="write" CLIENTS="1 64" PEERS="etcd36" bench/compare.sh
#   ENTRY=leader bench/compare.sh                      # raftkv's clients all on its leader
#
# Each system runs 3 members on loopback in fresh temp dirs, all durable
# (fsync before acknowledging). Workloads: write-only, linearizable reads,
# the 90/10 mix; 256-byte values, 10,000 keys, clients spread over the three
# members (ENTRY=leader: raftkv's all on its leader, which takes the
# forward hop out of the write path, to measure what that hop costs). In each cell the systems take turns going first. Results (JSON)
# stay in $OUT; one table per peer: raftkv/peer ratios (medians and ranges
# with REPEAT>1) and p99s.
set -euo pipefail
cd "$(dirname "$0")"
DURATION=${DURATION:-8s}
WARMUP=${WARMUP:-2s}
CLIENTS=${CLIENTS:-"1 64 256 1000"}
WORKLOADS=${WORKLOADS:-"write read mix90_10"}
REPEAT=${REPEAT:-1}
ETCD36_VERSION=${ETCD36_VERSION:-v3.6.5}
PEERS=${PEERS:-"etcd36 etcd34 consul"}
ENTRY=${ENTRY:-all}
OUT=${OUT:-$(mktemp -d -t raftkv-compare-XXXX)}
CACHE=${XDG_CACHE_HOME:-$HOME/.cache}/raftkv-bench
mkdir -p "$OUT" "$CACHE"

has_peer() { [[ " $PEERS " == *" $1 "* ]]; }
if has_peer etcd34 && ! command -v etcd >/dev/null; then
  echo "installing Debian's etcd-server (etcd 3.4)..." >&2
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq etcd-server >/dev/null
fi
ETCD36=$CACHE/etcd-$ETCD36_VERSION
if has_peer etcd36 && [ ! -x "$ETCD36" ]; then
  # etcd's own module refuses `go install` (replace directives); a main
  # package of our own around its server module builds it.
  echo "building etcd $ETCD36_VERSION (once; cached in $CACHE)..." >&2
  src=$(mktemp -d -t etcd-build-XXXX)
  printf 'package main\n\nimport (\n\t"os"\n\n\t"go.etcd.io/etcd/server/v3/etcdmain"\n)\n\nfunc main() { etcdmain.Main(os.Args) }\n' >"$src/main.go"
  (cd "$src" && go mod init etcdbuild >/dev/null 2>&1 && go get "go.etcd.io/etcd/server/v3@$ETCD36_VERSION" >/dev/null 2>&1 &&
    go mod tidy >/dev/null 2>&1 && go build -o "$ETCD36" .)
  rm -rf "$src"
fi
if has_peer consul && ! command -v consul >/dev/null; then
  PEERS=${PEERS/consul/}
fi

. ./lib.sh

start_etcd() { # name binary client-port-prefix peer-port-prefix
  local cluster=""
  for i in 1 2 3; do cluster+="${cluster:+,}$1-$i=http://127.0.0.1:$4$i"; done
  for i in 1 2 3; do
    "$2" --name "$1-$i" --data-dir "$DATA/$1-$i" \
      --listen-client-urls "http://127.0.0.1:$3$i" --advertise-client-urls "http://127.0.0.1:$3$i" \
      --listen-peer-urls "http://127.0.0.1:$4$i" --initial-advertise-peer-urls "http://127.0.0.1:$4$i" \
      --initial-cluster "$cluster" --initial-cluster-state new --initial-cluster-token "$1" \
      --logger zap --log-level error >"$DATA/$1-$i.log" 2>&1 &
    PIDS+=($!)
  done
}
# Ports: raftkv 27001-3; etcd 3.4 23791-3 (peers 23801-3); etcd 3.6
# 24791-3 (peers 24801-3); Consul HTTP 28501-3 (server 28301-3, serf 28311-3).
declare -A EP
start_raftkv raftkv 2700
EP[raftkv]=127.0.0.1:27001,127.0.0.1:27002,127.0.0.1:27003
if has_peer etcd34; then start_etcd etcd34 etcd 2379 2380; EP[etcd34]=127.0.0.1:23791,127.0.0.1:23792,127.0.0.1:23793; fi
if has_peer etcd36; then start_etcd etcd36 "$ETCD36" 2479 2480; EP[etcd36]=127.0.0.1:24791,127.0.0.1:24792,127.0.0.1:24793; fi
if has_peer consul; then
  for i in 1 2 3; do
    consul agent -server -bootstrap-expect 3 -node consul-$i -data-dir "$DATA/consul$i" -bind 127.0.0.1 \
      -http-port 2850$i -dns-port -1 -grpc-port -1 -server-port 2830$i -serf-lan-port 2831$i -serf-wan-port 2832$i \
      -retry-join 127.0.0.1:28311 -log-level error >"$DATA/consul$i.log" 2>&1 &
    PIDS+=($!)
  done
  EP[consul]=127.0.0.1:28501,127.0.0.1:28502,127.0.0.1:28503
fi

drive() { # system kvbench-args...
  local sys=$1; shift
  case $sys in
  raftkv) "$BIN/raftkv" --endpoints "${EP[raftkv]}" -o json bench "$@" ;;
  consul) "$BIN/kvbench" consul --endpoints "${EP[consul]}" -o json "$@" ;;
  *) "$BIN/kvbench" etcd --endpoints "${EP[$sys]}" -o json "$@" ;;
  esac
}
SYSTEMS="raftkv $PEERS"
for _ in $(seq 1 150); do
  ready=1
  for sys in $SYSTEMS; do
    drive "$sys" --clients 1 --duration 100ms --warmup 0s --mix write=100 >/dev/null 2>&1 || ready=0
  done
  members_are Voter "${EP[raftkv]}" || ready=0
  [ $ready = 1 ] && break
  sleep 0.3
done

if [ "$ENTRY" = leader ]; then
  leader=$(curl -sf "http://${EP[raftkv]%%,*}/v1/status/leader" | tr -d '"')
  [ -n "$leader" ] || { echo "raftkv has no leader" >&2; exit 1; }
  EP[raftkv]=$leader
  echo "raftkv's clients all on its leader, $leader" >&2
fi

turn=0
for workload in $WORKLOADS; do
  case $workload in
  write) mix=write=100 ;;
  read) mix=read=100 ;;
  mix90_10) mix=read=90,write=10 ;;
  *) echo "unknown workload $workload" >&2; exit 2 ;;
  esac
  for c in $CLIENTS; do
    for r in $(seq 1 "$REPEAT"); do
      # Rotate who goes first, so no system always runs on a warmer machine.
      order=$(echo $SYSTEMS | tr ' ' '\n' | awk -v t=$turn '{a[NR]=$0} END{for(i=0;i<NR;i++) print a[(i+t)%NR+1]}' | tr '\n' ' ')
      for sys in $order; do
        echo "$sys $workload $c clients (run $r)..." >&2
        f="$OUT/$sys-$workload-$c-$r.json"
        drive "$sys" --clients "$c" --duration "$DURATION" --warmup "$WARMUP" --mix "$mix" --value-size 256 \
          >"$f" 2>"$f.err" || { echo "  $sys failed: $(tail -1 "$f.err")" >&2; rm -f "$f"; }
      done
      turn=$((turn + 1))
    done
  done
done
echo
echo "raftkv $(cd .. && git rev-parse --short HEAD 2>/dev/null || echo dev), $(nproc) cores, $DURATION per run, $REPEAT run(s) per cell, raftkv's clients on: $ENTRY, results in $OUT"
for peer in $PEERS; do
  case $peer in
  etcd34) name="$(etcd --version | head -1)" ;;
  etcd36) name="etcd $ETCD36_VERSION" ;;
  consul) name="$(consul version | head -1)" ;;
  esac
  echo
  echo "### raftkv vs $name"
  echo
  "$BIN/kvbench" table "$OUT" raftkv "$peer"
done
