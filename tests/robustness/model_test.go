package robustness

import (
	"fmt"
	"sort"

	"github.com/anishathalye/porcupine"
)

// Operations as the model sees them. Every write carries a unique value, so
// a read says exactly which write it observed; ModifyIndex adds the raft
// index, which CAS compares against.
type input struct {
	Op    string // get, put, cas, delete (txn-cas and txn-get map to cas and get)
	Key   string
	Value string // put, cas: the new value
	Index uint64 // cas: the ModifyIndex expected (0: must not exist)
}

type output struct {
	Unknown bool   // a write whose outcome is unknown (504, timeout after sending)
	OK      bool   // cas: applied
	Exists  bool   // get
	Value   string // get
	Index   uint64 // get: ModifyIndex; put, cas: the index the write got
}

// state of one key. Index 0 with Exists means "written, index not seen":
// an unknown-outcome write left it so, until a read shows it.
type state struct {
	Exists bool
	Value  string
	Index  uint64
}

var model = porcupine.NondeterministicModel{
	Init: func() []interface{} { return []interface{}{state{}} },
	Step: func(st, in, out interface{}) []interface{} {
		s, i, o := st.(state), in.(input), out.(output)
		written := func(idx uint64) state { return state{Exists: true, Value: i.Value, Index: idx} }
		switch i.Op {
		case "get":
			if !o.Exists {
				if s.Exists {
					return nil
				}
				return []interface{}{s}
			}
			if !s.Exists || s.Value != o.Value || (s.Index != 0 && s.Index != o.Index) {
				return nil
			}
			return []interface{}{state{Exists: true, Value: s.Value, Index: o.Index}}
		case "put":
			if o.Unknown {
				return []interface{}{written(0)}
			}
			return []interface{}{written(o.Index)}
		case "delete":
			return []interface{}{state{}}
		case "cas":
			match := !s.Exists && i.Index == 0 || s.Exists && i.Index != 0 && s.Index == i.Index
			maybe := s.Exists && i.Index != 0 && s.Index == 0 // index not seen: either way
			switch {
			case o.Unknown && (match || maybe):
				if maybe {
					return []interface{}{s, written(0)}
				}
				return []interface{}{written(0)}
			case o.Unknown:
				return []interface{}{s}
			case o.OK && (match || maybe):
				return []interface{}{written(o.Index)}
			case !o.OK && !match:
				return []interface{}{s}
			}
			return nil
		}
		return nil
	},
	Equal:     func(a, b interface{}) bool { return a.(state) == b.(state) },
	Partition: partitionBy(func(in interface{}) string { return in.(input).Key }),
	DescribeOperation: func(in, out interface{}) string {
		i, o := in.(input), out.(output)
		res := fmt.Sprintf("ok=%v idx=%d", o.OK, o.Index)
		switch {
		case o.Unknown:
			res = "unknown"
		case i.Op == "get" && !o.Exists:
			res = "absent"
		case i.Op == "get":
			res = fmt.Sprintf("%q@%d", o.Value, o.Index)
		}
		return fmt.Sprintf("%s(%s %q idx=%d) → %s", i.Op, i.Key, i.Value, i.Index, res)
	},
	DescribeState: func(st interface{}) string {
		s := st.(state)
		if !s.Exists {
			return "absent"
		}
		return fmt.Sprintf("%q@%d", s.Value, s.Index)
	},
}

// partitionBy splits a history into one per key (porcupine checks each
// alone), in key order so that runs are reproducible.
func partitionBy(key func(input interface{}) string) func([]porcupine.Operation) [][]porcupine.Operation {
	return func(history []porcupine.Operation) [][]porcupine.Operation {
		byKey := map[string][]porcupine.Operation{}
		for _, op := range history {
			k := key(op.Input)
			byKey[k] = append(byKey[k], op)
		}
		keys := make([]string, 0, len(byKey))
		for k := range byKey {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		out := make([][]porcupine.Operation, 0, len(keys))
		for _, k := range keys {
			out = append(out, byKey[k])
		}
		return out
	}
}
