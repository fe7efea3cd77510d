package watch

import (
	"fmt"
	"testing"
)

func fired(w *Waiter) bool {
	select {
	case <-w.C:
		return true
	default:
		return false
	}
}

func TestRouting(t *testing.T) {
	h := New()
	exact := h.Watch("a/b", false)
	prefix := h.Watch("a/", true)
	all := h.Watch("", true)
	other := h.Watch("c", false)
	otherPrefix := h.Watch("a/c/", true)

	h.KeysChanged([]string{"a/b"})
	for name, w := range map[string]*Waiter{"exact": exact, "prefix": prefix, "all": all} {
		if !fired(w) {
			t.Fatalf("%s did not fire", name)
		}
	}
	if fired(other) || fired(otherPrefix) {
		t.Fatal("unrelated waiter fired")
	}
	if h.Len() != 2 {
		t.Fatalf("fired waiters still registered: %d", h.Len())
	}
	h.Stop(exact) // stopping a fired waiter is harmless
	h.Stop(other)
	h.AllChanged()
	if !fired(otherPrefix) || h.Len() != 0 {
		t.Fatalf("AllChanged left %d waiters", h.Len())
	}
	if len(h.sorted) != 0 || len(h.lens) != 0 {
		t.Fatalf("prefix lengths leaked: %v", h.sorted)
	}
}

func BenchmarkNotifyWithManyWaiters(b *testing.B) {
	h := New()
	for i := range 10000 {
		h.Watch(fmt.Sprintf("key/%d", i), false)
		if i%100 == 0 {
			h.Watch(fmt.Sprintf("dir%d/", i), true)
		}
	}
	keys := []string{"unrelated/1", "other/2"}
	b.ResetTimer()
	for range b.N {
		h.KeysChanged(keys)
	}
}
