package testsupport

import (
	"testing"
	"time"
)

// PollInterval is how often Poll and WaitFor check their condition.
const PollInterval = 20 * time.Millisecond

// Poll calls cond every PollInterval until it returns nil, and returns
// nil; or cond's last error once timeout has passed.
func Poll(timeout time.Duration, cond func() error) error {
	deadline := time.Now().Add(timeout)
	for {
		err := cond()
		if err == nil || time.Now().After(deadline) {
			return err
		}
		time.Sleep(PollInterval) // polling interval, not synchronisation
	}
}

// WaitFor polls cond until it returns nil, and fails the test with cond's
// last error if that does not happen within timeout.
func WaitFor(t testing.TB, timeout time.Duration, what string, cond func() error) {
	t.Helper()
	if err := Poll(timeout, cond); err != nil {
		t.Fatalf("timed out after %s waiting for %s: %v", timeout, what, err)
	}
}
