package crashtest

import (
	"os"
	"testing"

	"go.uber.org/goleak"
)

// TestMain runs the child when the test binary is started as one (see
// child_test.go); otherwise the tests, which must leave no goroutine behind.
func TestMain(m *testing.M) {
	if os.Getenv(envMode) != "" {
		os.Exit(childMain())
	}
	goleak.VerifyTestMain(m)
}
