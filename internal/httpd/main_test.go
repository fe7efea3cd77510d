package httpd

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: Close owns what Open started.
func TestMain(m *testing.M) { goleak.VerifyTestMain(m) }
