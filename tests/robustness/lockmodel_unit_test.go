package robustness

import (
	"testing"

	"github.com/anishathalye/porcupine"
)

// The lock model itself: it must accept what the contract allows and
// reject what it forbids, or the robustness runs prove nothing.
func TestLockModel(t *testing.T) {
	op := func(client int, call, ret int64, in lockInput, out lockOutput) porcupine.Operation {
		in.Key = "k"
		return porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret}
	}
	acquire := func(c int, call, ret int64, s, v string, ok bool) porcupine.Operation {
		return op(c, call, ret, lockInput{Op: "acquire", Session: s, Value: v}, lockOutput{OK: ok})
	}
	get := func(c int, call, ret int64, s, v string, li uint64) porcupine.Operation {
		return op(c, call, ret, lockInput{Op: "get"}, lockOutput{Exists: true, Session: s, Value: v, LockIndex: li})
	}
	for _, tc := range []struct {
		name   string
		mortal map[string]bool
		ops    []porcupine.Operation
		ok     bool
	}{
		{"acquire, fence, release, acquire", nil, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			op(1, 2, 3, lockInput{Op: "fenced", Session: "a", Value: "v2"}, lockOutput{OK: true, LockIndex: 1}),
			acquire(2, 4, 5, "b", "w1", false),
			get(2, 6, 7, "a", "v2", 1),
			op(1, 8, 9, lockInput{Op: "release", Session: "a"}, lockOutput{OK: true}),
			acquire(2, 10, 11, "b", "w2", true),
			get(1, 12, 13, "b", "w2", 2),
		}, true},
		{"two holders", nil, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			acquire(2, 2, 3, "b", "w1", true),
		}, false},
		{"a fenced write after the lock moved", nil, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			op(1, 2, 3, lockInput{Op: "release", Session: "a"}, lockOutput{OK: true}),
			acquire(2, 4, 5, "b", "w1", true),
			op(1, 6, 7, lockInput{Op: "fenced", Session: "a", Value: "v2"}, lockOutput{OK: true, LockIndex: 1}),
		}, false},
		{"a live session loses its key", nil, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			acquire(2, 2, 3, "b", "w1", true),
		}, false},
		{"an invalidated session loses its key; lock-delay may refuse", map[string]bool{"a": true}, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			acquire(2, 2, 3, "b", "w1", false), // lock-delay
			acquire(2, 4, 5, "b", "w2", true),
			get(1, 6, 7, "b", "w2", 2),
		}, true},
		{"a free key refused without invalidation", nil, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			op(1, 2, 3, lockInput{Op: "release", Session: "a"}, lockOutput{OK: true}),
			acquire(2, 4, 5, "b", "w1", false),
		}, false},
		{"LockIndex must grow", nil, []porcupine.Operation{
			acquire(1, 0, 1, "a", "v1", true),
			op(1, 2, 3, lockInput{Op: "release", Session: "a"}, lockOutput{OK: true}),
			acquire(2, 4, 5, "b", "w1", true),
			get(1, 6, 7, "b", "w1", 1),
		}, false},
		{"an unknown acquire may have happened", nil, []porcupine.Operation{
			op(1, 0, 100, lockInput{Op: "acquire", Session: "a", Value: "v1"}, lockOutput{Unknown: true}),
			get(2, 2, 3, "a", "v1", 1),
			acquire(2, 4, 5, "b", "w1", false),
		}, true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if got := porcupine.CheckOperations(lockModel(tc.mortal), tc.ops); got != tc.ok {
				t.Fatalf("linearizable = %v, want %v", got, tc.ok)
			}
		})
	}
}

// The direct mutual-exclusion check, on histories the model also rejects.
func TestExclusionViolations(t *testing.T) {
	op := func(call, ret int64, in lockInput, out lockOutput) porcupine.Operation {
		in.Key = "k"
		return porcupine.Operation{Input: in, Call: call, Output: out, Return: ret}
	}
	fenced := func(call, ret int64, s string, li uint64) porcupine.Operation {
		return op(call, ret, lockInput{Op: "fenced", Session: s}, lockOutput{OK: true, LockIndex: li})
	}
	if v := exclusionViolations([]porcupine.Operation{fenced(0, 1, "a", 1), fenced(2, 3, "b", 2), fenced(4, 5, "b", 2)}); len(v) != 0 {
		t.Fatalf("a clean history: %v", v)
	}
	if v := exclusionViolations([]porcupine.Operation{fenced(0, 1, "a", 1), fenced(2, 3, "b", 1)}); len(v) != 1 {
		t.Fatalf("two sessions under one LockIndex: %v", v)
	}
	if v := exclusionViolations([]porcupine.Operation{fenced(0, 1, "a", 2), fenced(2, 3, "b", 1)}); len(v) != 1 {
		t.Fatalf("LockIndex going back: %v", v)
	}
	if v := exclusionViolations([]porcupine.Operation{fenced(0, 10, "a", 2), fenced(2, 3, "b", 1)}); len(v) != 0 {
		t.Fatalf("concurrent operations may be ordered either way: %v", v)
	}
}
