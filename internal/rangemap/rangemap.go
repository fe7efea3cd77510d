package rangemap

import (
	"errors"
	"fmt"
	"slices"
	"strings"
)

// Replica is one member of a range's raft group.
type Replica struct {
	Node  string // the node's server ID
	Voter bool
}

// Descriptor says what one range is. Generation grows by one at every
// change of the bounds or the replicas, so (ID, Generation) names exactly
// one span on exactly one set of replicas.
type Descriptor struct {
	ID         uint64
	Start      string // first key of the range
	End        string // first key after it; "" for the end of the keyspace
	Generation uint64
	Replicas   []Replica
}

// Contains says whether key is in the range.
func (d Descriptor) Contains(key string) bool {
	return key >= d.Start && (d.End == "" || key < d.End)
}

// overlaps says whether the range holds any key of [start, end) ("" end:
// unbounded).
func (d Descriptor) overlaps(start, end string) bool {
	return (end == "" || d.Start < end) && (d.End == "" || start < d.End)
}

func (d Descriptor) String() string {
	end := d.End
	if end == "" {
		end = "∞"
	} else {
		end = fmt.Sprintf("%q", end)
	}
	return fmt.Sprintf("range %d [%q, %s) gen %d", d.ID, d.Start, end, d.Generation)
}

// Clone returns a copy that shares nothing with d.
func (d Descriptor) Clone() Descriptor {
	d.Replicas = slices.Clone(d.Replicas)
	return d
}

// ErrInvalid: a map or a descriptor that cannot be (overlapping or missing
// spans, a split key that breaks a rule).
var ErrInvalid = errors.New("invalid range")

// Map is a complete cut of the keyspace: ranges sorted by Start, the first
// starting at "" and each starting where the previous one ends, the last
// unbounded. A Map is immutable.
type Map struct {
	ranges []Descriptor
}

// New checks that ranges cut the whole keyspace exactly once, with
// distinct IDs, and returns the map.
func New(ranges []Descriptor) (*Map, error) {
	rs := make([]Descriptor, len(ranges))
	for i, d := range ranges {
		rs[i] = d.Clone()
	}
	slices.SortFunc(rs, func(a, b Descriptor) int { return strings.Compare(a.Start, b.Start) })
	if len(rs) == 0 {
		return nil, fmt.Errorf("%w: no ranges", ErrInvalid)
	}
	ids := map[uint64]bool{}
	want := ""
	for i, d := range rs {
		if ids[d.ID] {
			return nil, fmt.Errorf("%w: range ID %d twice", ErrInvalid, d.ID)
		}
		ids[d.ID] = true
		if d.Start != want {
			return nil, fmt.Errorf("%w: %s starts at %q, where %q was expected", ErrInvalid, d, d.Start, want)
		}
		last := i == len(rs)-1
		switch {
		case last && d.End != "":
			return nil, fmt.Errorf("%w: the last range, %s, ends before the end of the keyspace", ErrInvalid, d)
		case !last && (d.End == "" || d.End <= d.Start):
			return nil, fmt.Errorf("%w: %s is empty or overlaps %s", ErrInvalid, d, rs[i+1])
		}
		want = d.End
	}
	return &Map{ranges: rs}, nil
}

// One is the map of a keyspace in one range: how every cluster starts.
func One(d Descriptor) *Map {
	d = d.Clone()
	d.Start, d.End = "", ""
	return &Map{ranges: []Descriptor{d}}
}

// Ranges returns the descriptors in key order.
func (m *Map) Ranges() []Descriptor {
	out := make([]Descriptor, len(m.ranges))
	for i, d := range m.ranges {
		out[i] = d.Clone()
	}
	return out
}

// Len is the number of ranges.
func (m *Map) Len() int { return len(m.ranges) }

// Lookup returns the range holding key.
func (m *Map) Lookup(key string) Descriptor {
	// The last range whose Start <= key: the cover has no holes.
	i, found := slices.BinarySearchFunc(m.ranges, key, func(d Descriptor, k string) int { return strings.Compare(d.Start, k) })
	if !found {
		i--
	}
	return m.ranges[i].Clone()
}

// ByID returns the range with that ID.
func (m *Map) ByID(id uint64) (Descriptor, bool) {
	for _, d := range m.ranges {
		if d.ID == id {
			return d.Clone(), true
		}
	}
	return Descriptor{}, false
}

// Prefix returns the ranges holding some key that starts with prefix, in
// key order.
func (m *Map) Prefix(prefix string) []Descriptor {
	end := PrefixEnd(prefix)
	var out []Descriptor
	for _, d := range m.ranges {
		if d.overlaps(prefix, end) {
			out = append(out, d.Clone())
		}
	}
	return out
}

// PrefixEnd is the first key after every key that starts with prefix, ""
// if there is none (the prefix is empty or all 0xff bytes).
func PrefixEnd(prefix string) string {
	b := []byte(prefix)
	for i := len(b) - 1; i >= 0; i-- {
		if b[i] < 0xff {
			b[i]++
			return string(b[:i+1])
		}
	}
	return ""
}

// CheckSplitKey says whether d may be split at key: key ends with "/" (a
// path boundary: what a listing with separator=/ groups together stays on
// one side), lies strictly inside d (each half gets some of the keyspace),
// and is not strictly inside a prefix kept whole (a split exactly at such
// a prefix keeps it whole on the right).
func CheckSplitKey(d Descriptor, key string, keepWhole []string) error {
	switch {
	case !strings.HasSuffix(key, "/"):
		return fmt.Errorf("%w: split key %q must end with \"/\"", ErrInvalid, key)
	case key <= d.Start || !d.Contains(key):
		return fmt.Errorf("%w: split key %q is not inside %s", ErrInvalid, key, d)
	}
	for _, p := range keepWhole {
		if strings.HasPrefix(key, p) && key != p {
			return fmt.Errorf("%w: split key %q is inside %q, which is kept whole", ErrInvalid, key, p)
		}
	}
	return nil
}

// Split cuts d at key: the left half keeps d's ID, the right half gets
// newID; both have the same replicas and the next generation.
func Split(d Descriptor, key string, newID uint64, keepWhole []string) (left, right Descriptor, err error) {
	if err := CheckSplitKey(d, key, keepWhole); err != nil {
		return Descriptor{}, Descriptor{}, err
	}
	if newID == d.ID {
		return Descriptor{}, Descriptor{}, fmt.Errorf("%w: the new range needs an ID of its own, not %d", ErrInvalid, newID)
	}
	left, right = d.Clone(), d.Clone()
	left.End, left.Generation = key, d.Generation+1
	right.ID, right.Start, right.Generation = newID, key, d.Generation+1
	return left, right, nil
}

// WithSplit returns the map with d's range replaced by its two halves (as
// Split returned them).
func (m *Map) WithSplit(left, right Descriptor) (*Map, error) {
	var rs []Descriptor
	for _, d := range m.ranges {
		if d.ID == left.ID {
			rs = append(rs, left, right)
			continue
		}
		rs = append(rs, d)
	}
	return New(rs)
}

// CheckKeepWhole says whether prefix can be kept whole in m: no range
// boundary may fall strictly inside it.
func (m *Map) CheckKeepWhole(prefix string) error {
	for _, d := range m.ranges[1:] {
		if strings.HasPrefix(d.Start, prefix) && d.Start != prefix {
			return fmt.Errorf("%w: %q is already split: %s starts inside it", ErrInvalid, prefix, d)
		}
	}
	return nil
}
