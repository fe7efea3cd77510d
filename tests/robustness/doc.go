// Package robustness checks raftkv's promises (docs/API.md, Guarantees) under faults, the
// way etcd's robustness tests and Jepsen do: real raftkvd processes built
// with -tags failpoints, clients pinned to every node recording each
// operation's call and return, a fault per scenario (crashes, pauses,
// partitions, snapshot installs, membership changes, leadership transfers),
// then checks: porcupine linearizability, durability across a full-cluster
// crash, convergence, availability, stale-read sanity.
//
//	go test ./tests/robustness                      # CI mode: every scenario once
//	RAFTKV_SOAK=30m go test -timeout 0 ./tests/robustness   # soak: repeat with longer traffic
package robustness
