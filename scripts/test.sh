#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, then runs
# every test. The robustness suite cuts the network between raftkvd
# processes with real packet loss (network namespaces and iptables), which
# needs root and iptables; without them it falls back to the failpoint build.
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" = 0 ] && ! command -v iptables >/dev/null 2>&1 && command -v apt-get >/dev/null 2>&1; then
  echo "== installing iptables (for network partitions in tests/robustness)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq iptables >/dev/null; } ||
    echo "   could not install iptables: partitions will use the failpoint build"
fi

go test -race -count=1 -timeout 15m ./... "$@"
