package fsm

import (
	"testing"

	"go.uber.org/goleak"
)

// Every test must leave no goroutine behind: Close owns what Open started.
// Except what Badger itself leaves when its Open fails half way (it starts
// a cache monitor and an allocator pool before reading its files, and does
// not stop them on the way out): the damaged-files test opens hundreds of
// damaged dirs on purpose.
func TestMain(m *testing.M) {
	goleak.VerifyTestMain(m,
		goleak.IgnoreTopFunction("github.com/dgraph-io/badger/v4.(*DB).monitorCache"),
		goleak.IgnoreTopFunction("github.com/dgraph-io/ristretto/v2/z.(*AllocatorPool).freeupAllocators"))
}
