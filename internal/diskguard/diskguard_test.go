package diskguard

import (
	"fmt"
	"sync"
	"syscall"
	"testing"
)

// disk is a fake file system size: available is what the guard sees.
type disk struct {
	mu        sync.Mutex
	available uint64
}

func (d *disk) set(n uint64) { d.mu.Lock(); d.available = n; d.mu.Unlock() }
func (d *disk) read(string) (uint64, error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.available, nil
}

func TestReserveIsGivenBackAndTakenAgain(t *testing.T) {
	dir := t.TempDir()
	d := &disk{available: 100 << 20}
	g, err := Open(dir, Options{Reserve: 1 << 20, Available: d.read})
	if err != nil {
		t.Fatal(err)
	}
	var changes []bool
	g.OnChange(func(full bool) { changes = append(changes, full) })
	if g.Full() || !g.hasReserve() {
		t.Fatal("with room: not full, reserve allocated")
	}
	d.set(200 << 10) // below a quarter of the reserve
	g.Check()
	if !g.Full() || g.hasReserve() {
		t.Fatal("low on space: full, reserve given back")
	}
	d.set(1 << 20) // the reserve would fit, but leave too little
	g.Check()
	if !g.Full() {
		t.Fatal("left full mode without room to spare")
	}
	d.set(2 << 20)
	g.Check()
	if g.Full() || !g.hasReserve() {
		t.Fatal("space freed: not full, reserve allocated again")
	}
	if fmt.Sprint(changes) != "[false true false]" { // the state at registration, then each change
		t.Fatalf("changes heard: %v", changes)
	}
}

func TestENOSPCGivesTheReserveBackAtOnce(t *testing.T) {
	dir := t.TempDir()
	g, err := Open(dir, Options{Reserve: 1 << 20, Available: (&disk{available: 100 << 20}).read})
	if err != nil {
		t.Fatal(err)
	}
	if g.NoSpace(fmt.Errorf("write: %w", syscall.EIO)) || g.Full() {
		t.Fatal("another error taken for a full disk")
	}
	if !g.NoSpace(fmt.Errorf("append: %w", syscall.ENOSPC)) || !g.Full() || g.hasReserve() {
		t.Fatal("ENOSPC: the reserve must go at once")
	}
}

func TestNoRoomForTheReserveAtStart(t *testing.T) {
	g, err := Open(t.TempDir(), Options{Reserve: 1 << 20, Available: (&disk{available: 100 << 10}).read})
	if err != nil {
		t.Fatal(err)
	}
	// The fake says there is little room, but the reserve is allocated on
	// the real disk: the guard goes by the reserve, then by the space left.
	g.Check()
	if !g.Full() {
		t.Fatal("started with less than a quarter of the reserve available, and not full")
	}
}
