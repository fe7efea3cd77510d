// Package httpd is raftkv's HTTP API: Consul-compatible /v1/kv, cluster
// status and operator endpoints, health, readiness and Prometheus metrics
// (reference: docs/API.md).
//
// It knows nothing of raft: it talks to a Store (declared here, implemented
// by raftstore.RaftStore and by a fake in the tests), turns requests into
// kv.Query and kv.Command values, and turns results and sentinel errors into
// responses. The error → status mapping lives in errors.go and nowhere else.
package httpd
