#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, then runs
# every test. The robustness suite cuts the network between raftkvd
# processes with real packet loss (network namespaces and iptables), which
# needs root and iptables; without them it falls back to the failpoint build.
# The web UI's tests (tests/ui) drive Debian's headless Chromium.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PACKAGE WHY: installs a Debian package when missing (as root).
apt_install() {
  echo "== installing $1 ($2)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null; }
}

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! command -v iptables >/dev/null 2>&1; then
    apt_install iptables "for network partitions in tests/robustness" ||
      echo "   could not install iptables: partitions will use the failpoint build"
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium "for the web UI's browser tests in tests/ui"
  fi
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "tests/ui needs Chromium: run this script as root (it installs Debian's chromium), or install it" >&2
  exit 1
fi

go test -race -count=1 -timeout 15m ./... "$@"
