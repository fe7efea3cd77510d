// Package patroni runs Patroni (PostgreSQL high availability) on raftkv the
// way it runs on Consul: three Patroni members, each with its own
// PostgreSQL under t.TempDir(), each using Patroni's consul DCS against a
// different node of a three-node raftkvd cluster. It bootstraps the
// cluster, switches the primary over through Patroni's REST API, kills the
// primary (Patroni and PostgreSQL, kill -9) and brings it back, kills the
// raft leader, and freezes the two raftkv nodes the primary's Patroni does
// not talk to for 3 s; a checker polls every member throughout and fails
// the test if two PostgreSQL servers were ever primaries at the same time.
// docs/PATRONI.md describes the setup and what was observed.
//
// It needs Debian's patroni, python3-consul and postgresql packages
// (scripts/test.sh installs them when it runs as root) and fails, rather
// than skips, without them. Run as root, Patroni and PostgreSQL run as the
// postgres user (PostgreSQL refuses root); RAFTKV_PG_BIN_DIR overrides
// PostgreSQL's bin directory (default: the newest /usr/lib/postgresql/*/bin).
//
//	go test -v ./tests/patroni
package patroni
