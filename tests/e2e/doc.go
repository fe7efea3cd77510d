// Package e2e drives real raftkvd processes on 127.0.0.1 with real clients
// (HashiCorp's Consul Go API client). The binary is built once per test run
// into a temp dir.
package e2e
