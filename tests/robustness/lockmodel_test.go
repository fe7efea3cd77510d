package robustness

import (
	"fmt"

	"github.com/anishathalye/porcupine"
)

// Lock operations as the model sees them, one lock key each. Values are
// unique per write, so a read says which acquire or fenced write it saw.
type lockInput struct {
	Op      string // acquire, release, fenced (txn check-session + set), get
	Key     string
	Session string
	Value   string // acquire, fenced
}

type lockOutput struct {
	Unknown   bool // outcome unknown (504, timeout after sending)
	OK        bool // acquire, release, fenced: true/200
	Exists    bool // get
	Value     string
	Session   string
	LockIndex uint64
}

// lockState of one key. Delayed: the holder's session was invalidated and
// lock-delay may still refuse an acquire of the free key.
type lockState struct {
	Exists    bool
	Value     string
	Session   string
	LockIndex uint64
	Delayed   bool
}

// lockModel checks the history of lock keys. mortal holds the sessions that
// the cluster invalidated during the run (those gone at its end, not
// destroyed by a client): any of them may lose its keys between any two
// operations, others never do.
func lockModel(mortal map[string]bool) porcupine.Model {
	return (&porcupine.NondeterministicModel{
		Init: func() []interface{} { return []interface{}{lockState{}} },
		Step: func(st, in, out interface{}) []interface{} {
			s, i, o := st.(lockState), in.(lockInput), out.(lockOutput)
			candidates := []lockState{s}
			if s.Session != "" && mortal[s.Session] { // invalidated meanwhile: released, lock-delay on
				candidates = append(candidates, lockState{Exists: true, Value: s.Value, LockIndex: s.LockIndex, Delayed: true})
			}
			var next []interface{}
			for _, c := range candidates {
				for _, n := range lockStep(c, i, o) {
					next = append(next, n)
				}
			}
			return next
		},
		Equal:     func(a, b interface{}) bool { return a.(lockState) == b.(lockState) },
		Partition: partitionBy(func(in interface{}) string { return in.(lockInput).Key }),
		DescribeOperation: func(in, out interface{}) string {
			i, o := in.(lockInput), out.(lockOutput)
			res := fmt.Sprintf("%v", o.OK)
			switch {
			case o.Unknown:
				res = "unknown"
			case i.Op == "get" && !o.Exists:
				res = "absent"
			case i.Op == "get":
				res = fmt.Sprintf("%q session=%.8s lockindex=%d", o.Value, o.Session, o.LockIndex)
			}
			return fmt.Sprintf("%s(%s %.8s %q) → %s", i.Op, i.Key, i.Session, i.Value, res)
		},
		DescribeState: func(st interface{}) string {
			s := st.(lockState)
			if !s.Exists {
				return "absent"
			}
			return fmt.Sprintf("%q session=%.8s lockindex=%d delayed=%v", s.Value, s.Session, s.LockIndex, s.Delayed)
		},
	}).ToModel()
}

// lockStep applies one operation to one state: the states it may lead to,
// none if the output is impossible.
func lockStep(s lockState, i lockInput, o lockOutput) []lockState {
	switch i.Op {
	case "get":
		if o.Exists != s.Exists || o.Exists && (o.Value != s.Value || o.Session != s.Session || o.LockIndex != s.LockIndex) {
			return nil
		}
		return []lockState{s}
	case "acquire":
		held := s
		held.Exists, held.Value, held.Session, held.Delayed = true, i.Value, i.Session, false
		switch {
		case s.Session == i.Session: // re-acquire: value written, same LockIndex
		case s.Session == "":
			held.LockIndex++
		default:
			held = lockState{} // held by another: cannot succeed
		}
		canTake := held != lockState{}
		mayRefuse := s.Session != i.Session && (s.Session != "" || s.Delayed)
		switch {
		case o.Unknown && canTake:
			return []lockState{s, held}
		case o.Unknown:
			return []lockState{s}
		case o.OK && canTake:
			return []lockState{held}
		case !o.OK && mayRefuse:
			return []lockState{s}
		}
		return nil
	case "release":
		freed := s
		freed.Session, freed.Value = "", i.Value // like any PUT, release writes its body
		holds := s.Session == i.Session
		switch {
		case o.Unknown && holds:
			return []lockState{s, freed}
		case o.Unknown, !o.OK && !holds:
			return []lockState{s}
		case o.OK && holds:
			return []lockState{freed}
		}
		return nil
	case "fenced":
		written := s
		written.Value = i.Value
		holds := s.Session == i.Session
		switch {
		case o.Unknown && holds:
			return []lockState{s, written}
		case o.Unknown, !o.OK && !holds:
			return []lockState{s}
		case o.OK && holds && o.LockIndex == s.LockIndex:
			return []lockState{written}
		}
		return nil
	}
	return nil
}
