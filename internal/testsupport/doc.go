// Package testsupport holds what the tests of several packages share:
// polling for a condition with a deadline (never sleeping as
// synchronisation). Its subpackages start clusters: in-process nodes
// (testnode), raftkvd processes (proccluster), network namespaces (netns).
package testsupport
