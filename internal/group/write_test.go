package group

import (
	"errors"
	"testing"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/kv"
)

func TestApplyErrorClassification(t *testing.T) {
	for _, err := range []error{raft.ErrNotLeader, raft.ErrEnqueueTimeout, raft.ErrLeadershipTransferInProgress} {
		if got := classifyApplyError(err); !errors.Is(got, kv.ErrNoLeader) {
			t.Fatalf("%v classified as %v, want not applied (ErrNoLeader)", err, got)
		}
	}
	for _, err := range []error{raft.ErrLeadershipLost, raft.ErrRaftShutdown, errors.New("disk on fire")} {
		if got := classifyApplyError(err); !errors.Is(got, kv.ErrUnknownOutcome) {
			t.Fatalf("%v classified as %v, want unknown outcome", err, got)
		}
	}
}
