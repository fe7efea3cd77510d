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

// ErrInvalid: a descriptor that cannot be, or a split key that breaks a
// rule.
var ErrInvalid = errors.New("invalid range")

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

// Empty says whether the range holds no key at all (a replica that has
// not received its range's state yet has such a placeholder).
func (d Descriptor) Empty() bool { return d.End != "" && d.End <= d.Start }

// Overlaps says whether d and o share a key.
func (d Descriptor) Overlaps(o Descriptor) bool {
	if d.Empty() || o.Empty() {
		return false
	}
	return (o.End == "" || d.Start < o.End) && (d.End == "" || o.Start < d.End)
}
