// Package watch wakes blocking queries when the keys they read change.
//
// A waiter registers a key (exact) or a prefix and gets a channel that is
// closed on the first change that could affect it; it then re-reads and, if
// it must wait again, registers again. Notifying costs a map lookup per
// changed key plus one per distinct registered prefix length, whatever the
// number of waiters, and a waiter costs no goroutine of its own: thousands
// of blocking queries are thousands of idle channels.
package watch

import (
	"sort"
	"sync"
)

// Hub routes change notifications to waiters.
type Hub struct {
	mu       sync.Mutex
	keys     map[string]map[*Waiter]struct{}
	prefixes map[string]map[*Waiter]struct{}
	lens     map[int]int // registered prefix length → how many prefixes have it
	sorted   []int       // the keys of lens, ascending
	count    int
}

// Waiter is one registration. C is closed when it fires.
type Waiter struct {
	C      <-chan struct{}
	c      chan struct{}
	key    string
	prefix bool
	fired  bool
}

// New returns an empty hub.
func New() *Hub {
	return &Hub{
		keys:     map[string]map[*Waiter]struct{}{},
		prefixes: map[string]map[*Waiter]struct{}{},
		lens:     map[int]int{},
	}
}

// Watch registers interest in key, or in every key starting with it if
// prefix is set. Call Stop when done, fired or not.
func (h *Hub) Watch(key string, prefix bool) *Waiter {
	c := make(chan struct{})
	w := &Waiter{C: c, c: c, key: key, prefix: prefix}
	h.mu.Lock()
	defer h.mu.Unlock()
	m := h.keys
	if prefix {
		m = h.prefixes
	}
	set, ok := m[key]
	if !ok {
		set = map[*Waiter]struct{}{}
		m[key] = set
		if prefix {
			h.addLen(len(key))
		}
	}
	set[w] = struct{}{}
	h.count++
	return w
}

// Stop unregisters w.
func (h *Hub) Stop(w *Waiter) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if !w.fired {
		h.remove(w)
	}
}

// Len is the number of registered waiters.
func (h *Hub) Len() int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.count
}

// KeysChanged fires every waiter on one of keys or on a prefix of one.
func (h *Hub) KeysChanged(keys []string) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.count == 0 {
		return
	}
	// Firing may unregister a prefix length; walk a copy.
	lens := append(make([]int, 0, len(h.sorted)), h.sorted...)
	for _, k := range keys {
		h.fireSet(h.keys[k])
		for _, l := range lens {
			if l > len(k) {
				break
			}
			h.fireSet(h.prefixes[k[:l]])
		}
	}
}

// AllChanged fires every waiter (the state was replaced wholesale).
func (h *Hub) AllChanged() {
	h.mu.Lock()
	defer h.mu.Unlock()
	for _, m := range []map[string]map[*Waiter]struct{}{h.keys, h.prefixes} {
		for _, set := range m {
			h.fireSet(set)
		}
	}
}

func (h *Hub) fireSet(set map[*Waiter]struct{}) {
	for w := range set {
		w.fired = true
		close(w.c)
		h.remove(w)
	}
}

func (h *Hub) remove(w *Waiter) {
	m := h.keys
	if w.prefix {
		m = h.prefixes
	}
	set := m[w.key]
	if _, ok := set[w]; !ok {
		return
	}
	delete(set, w)
	h.count--
	if len(set) == 0 {
		delete(m, w.key)
		if w.prefix {
			h.dropLen(len(w.key))
		}
	}
}

func (h *Hub) addLen(l int) {
	h.lens[l]++
	if h.lens[l] == 1 {
		i := sort.SearchInts(h.sorted, l)
		h.sorted = append(h.sorted, 0)
		copy(h.sorted[i+1:], h.sorted[i:])
		h.sorted[i] = l
	}
}

func (h *Hub) dropLen(l int) {
	h.lens[l]--
	if h.lens[l] == 0 {
		delete(h.lens, l)
		i := sort.SearchInts(h.sorted, l)
		h.sorted = append(h.sorted[:i], h.sorted[i+1:]...)
	}
}
