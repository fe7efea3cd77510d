#!/usr/bin/env bash
# The test command (README, CI): installs what the tests need, then runs
# every test. The robustness suite cuts the network between raftkvd
# processes with real packet loss (network namespaces and iptables), which
# needs root and iptables; without them it falls back to the failpoint build.
# The web UI's tests (tests/ui) drive Debian's headless Chromium; the
# Patroni test (tests/patroni) runs Debian's patroni (with python3-consul,
# its Consul DCS client) and PostgreSQL server.
set -euo pipefail
cd "$(dirname "$0")/.."

# apt_install PACKAGE WHY: installs a Debian package when missing (as root).
apt_install() {
  echo "== installing $1 ($2)"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null 2>&1 ||
    { apt-get update -qq >/dev/null 2>&1 && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$1" >/dev/null; }
}

# patroni_ok: Patroni is installed with its Consul DCS client (Debian's
# patroni package depends on one DCS client of several, not necessarily
# python3-consul), whichever python its script runs with.
patroni_ok() {
  local p py
  p=$(command -v patroni 2>/dev/null) || return 1
  py=$(head -n1 "$p" | awk '{ sub(/^#! */, ""); if ($1 ~ /\/env$/) print $2; else print $1 }')
  "${py:-python3}" -c 'import consul' >/dev/null 2>&1
}
# postgres_ok: a PostgreSQL server where Debian puts it.
postgres_ok() { compgen -G '/usr/lib/postgresql/*/bin/postgres' >/dev/null; }

if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
  if ! command -v iptables >/dev/null 2>&1; then
    apt_install iptables "for network partitions in tests/robustness" ||
      echo "   could not install iptables: partitions will use the failpoint build"
  fi
  if ! command -v chromium >/dev/null 2>&1; then
    apt_install chromium "for the web UI's browser tests in tests/ui"
  fi
  if ! postgres_ok; then
    apt_install postgresql "for Patroni's PostgreSQL in tests/patroni"
  fi
  if ! command -v patroni >/dev/null 2>&1; then
    apt_install patroni "for tests/patroni"
  fi
  if ! patroni_ok; then
    apt_install python3-consul "Patroni's Consul DCS client, for tests/patroni"
  fi
fi
if ! command -v chromium >/dev/null 2>&1 && ! command -v chromium-browser >/dev/null 2>&1; then
  echo "tests/ui needs Chromium: run this script as root (it installs Debian's chromium), or install it" >&2
  exit 1
fi
if ! patroni_ok || ! postgres_ok; then
  echo "tests/patroni needs Patroni with python3-consul and a PostgreSQL server: run this script as root (it installs Debian's patroni, python3-consul and postgresql), or install them" >&2
  exit 1
fi

go test -race -count=1 -timeout 15m ./... "$@"
