// Package testnode runs a one-node raftkv cluster inside a test's process,
// for the tests of raftkv's clients (the Go client, the CLI) that need a
// real node to talk to but not a cluster of processes (package proccluster
// runs those).
package testnode

import (
	"log/slog"
	"testing"
	"time"

	"github.com/raftkv/raftkv/raftstore"
)

// Start runs a one-node cluster (over TLS when files are given; client
// certificates demanded with verifyIncoming), closed when the test ends,
// and returns its address once it serves.
func Start(t testing.TB, files raftstore.TLSFiles, verifyIncoming bool) string {
	t.Helper()
	s, err := raftstore.Open(raftstore.Config{
		ID:                "n1",
		Addr:              "127.0.0.1:0",
		DataDir:           t.TempDir(),
		Bootstrap:         true,
		SmallFootprint:    true,
		Logger:            slog.New(slog.DiscardHandler),
		HeartbeatTimeout:  300 * time.Millisecond,
		ElectionTimeout:   300 * time.Millisecond,
		TLS:               files,
		TLSVerifyIncoming: verifyIncoming,
	})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		if err := s.Close(); err != nil {
			t.Errorf("close the node: %v", err)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !s.Ready() {
		if time.Now().After(deadline) {
			t.Fatal("the node never became ready")
		}
		time.Sleep(20 * time.Millisecond) // polling, not synchronisation
	}
	return s.Addr()
}
