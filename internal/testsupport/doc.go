// Package testsupport holds what the tests of several packages share:
// polling for a condition with a deadline (Poll, WaitFor; never sleeping
// as synchronisation). Its subpackages run what tests run against: a
// one-node cluster in the test's process (testnode), clusters of raftkvd
// processes (proccluster), and a real network between processes made of
// network namespaces (netns).
package testsupport
