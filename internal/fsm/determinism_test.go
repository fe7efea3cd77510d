package fsm

import (
	"bytes"
	"fmt"
	"math/rand/v2"
	"strings"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// randomACLCommand draws from a few IDs and names, so that commands
// collide: names taken, policies deleted under tokens, bootstrap repeated.
func randomACLCommand(r *rand.Rand) *acl.Command {
	pid := fmt.Sprintf("00000000-0000-0000-0001-%012d", r.IntN(3))
	tid := fmt.Sprintf("00000000-0000-0000-0002-%012d", r.IntN(3))
	name := fmt.Sprintf("p%d", r.IntN(3))
	switch r.IntN(6) {
	case 0:
		return &acl.Command{Op: acl.OpBootstrap, Token: &acl.Token{AccessorID: tid, SecretID: "boot-" + tid}}
	case 1:
		return &acl.Command{Op: acl.OpPolicySet, Create: r.IntN(2) == 0, Policy: &acl.Policy{ID: pid, Name: name, Rules: `key_prefix "" { policy = "read" }`}}
	case 2:
		return &acl.Command{Op: acl.OpPolicyDelete, ID: pid}
	case 3:
		return &acl.Command{Op: acl.OpTokenDelete, ID: tid}
	default:
		return &acl.Command{Op: acl.OpTokenSet, Create: r.IntN(2) == 0, Token: &acl.Token{AccessorID: tid, SecretID: "s-" + tid,
			Policies: []acl.PolicyLink{{ID: pid}, {Name: name}}}}
	}
}

// randomLog is a log with everything that has state besides the keys:
// idempotency keys (some repeated), deletes (tombstones), sessions, locks
// and their invalidation (lock-delays), and time jumps past the TTLs so
// that expiry and reaping happen.
func randomLog(seed uint64, n int) []*raft.Log {
	r := rand.New(rand.NewPCG(seed, seed))
	var logs []*raft.Log
	at := time.Duration(0)
	for i := 1; i <= n; i++ {
		at += time.Duration(r.IntN(20)) * time.Second
		if r.IntN(15) == 0 {
			at += 3 * time.Minute // past both TTLs below
		}
		key := fmt.Sprintf("d%d/k%d", r.IntN(3), r.IntN(12))
		var op kv.Op
		sid := fmt.Sprintf("s%d", r.IntN(3))
		lockKey := fmt.Sprintf("d0/l%d", r.IntN(2)) // few lock keys: contention, lock-delays
		switch r.IntN(16) {
		case 14, 15:
			op = kv.Op{Verb: kv.VerbACL, Value: EncodeACLCommand(randomACLCommand(r))}
		case 13:
			mark := []byte("1")
			if r.IntN(2) == 0 {
				mark = nil
			}
			op = kv.Op{Verb: kv.VerbReadReplica, Key: fmt.Sprintf("n%d", r.IntN(3)), Value: mark}
		case 6:
			behavior := kv.BehaviorRelease
			if r.IntN(2) == 0 {
				behavior = kv.BehaviorDelete
			}
			op = kv.Op{Verb: kv.VerbSessionCreate, Session: sid, Value: EncodeSession(&kv.Session{
				Node: "n1", Behavior: behavior, LockDelay: time.Duration(1+r.IntN(2)) * 30 * time.Second})}
		case 7:
			op = kv.Op{Verb: kv.VerbSessionDestroy, Session: sid}
		case 8, 9, 10:
			op = kv.Op{Verb: kv.VerbLock, Key: lockKey, Session: sid, Value: []byte(fmt.Sprint(i))}
		case 11:
			op = kv.Op{Verb: kv.VerbUnlock, Key: lockKey, Session: sid}
		case 12:
			op = kv.Op{Verb: kv.VerbCheckSession, Key: lockKey, Session: sid}
		case 0, 1:
			op = kv.Op{Verb: kv.VerbSet, Key: key, Value: []byte(fmt.Sprint(i))}
		case 2:
			op = kv.Op{Verb: kv.VerbDelete, Key: key}
		case 3:
			op = kv.Op{Verb: kv.VerbDeleteTree, Key: fmt.Sprintf("d%d/", r.IntN(3))}
		case 4:
			op = kv.Op{Verb: kv.VerbCAS, Key: key, Value: []byte("cas"), Index: uint64(r.IntN(i + 1))}
		default:
			op = kv.Op{Verb: kv.VerbGetTree, Key: ""}
		}
		idem := ""
		if r.IntN(2) == 0 {
			idem = fmt.Sprintf("req-%d", r.IntN(40))
		}
		if r.IntN(10) == 0 {
			logs = append(logs, &raft.Log{Index: uint64(i), Type: raft.LogConfiguration})
			continue
		}
		logs = append(logs, timed(uint64(i), at, idem, op))
	}
	// A fixed tail: an invalidation and an acquire inside its lock-delay,
	// then time enough for the lock-delay to expire from the queue.
	for j, op := range []kv.Op{
		{Verb: kv.VerbSessionCreate, Session: "t1", Value: EncodeSession(&kv.Session{Node: "n1", Behavior: kv.BehaviorRelease, LockDelay: time.Minute})},
		{Verb: kv.VerbSessionCreate, Session: "t2", Value: EncodeSession(&kv.Session{Node: "n1", Behavior: kv.BehaviorRelease})},
		{Verb: kv.VerbLock, Key: "z/lock", Session: "t1"},
		{Verb: kv.VerbSessionDestroy, Session: "t1"},
		{Verb: kv.VerbLock, Key: "z/lock", Session: "t2"},
		{Verb: kv.VerbSet, Key: "z/later"},
		{Verb: kv.VerbLock, Key: "z/lock", Session: "t2"},
	} {
		if j == 5 {
			at += 2 * time.Minute
		}
		logs = append(logs, timed(uint64(n+1+j), at, "", op))
	}
	return logs
}

// applySplit applies logs in batches of the given sizes (cycled) and
// returns the full snapshot bytes and every result.
func applySplit(t *testing.T, logs []*raft.Log, sizes []int) ([]byte, string) {
	t.Helper()
	f := mustOpen(t, t.TempDir())
	var results bytes.Buffer
	for i, s := 0, 0; i < len(logs); s++ {
		n := min(sizes[s%len(sizes)], len(logs)-i)
		for _, r := range f.ApplyBatch(logs[i : i+n]) {
			fmt.Fprintf(&results, "%+v\n", r)
		}
		i += n
	}
	if f.reaped == 0 || f.idemCount > maxIdempotencyKeys+int64(maxExpiryPerCommand) {
		t.Fatalf("the log did not exercise expiry (reaped=%d, idempotency keys=%d)", f.reaped, f.idemCount)
	}
	var snap bytes.Buffer
	if _, err := f.WriteSnapshot(&snap); err != nil {
		t.Fatal(err)
	}
	return snap.Bytes(), results.String()
}

// TestSameLogSameStateWhateverTheBatches: raft batches entries differently
// on every node; the state (including tombstones, the idempotency table and
// the expiry queue) and every answer must not depend on it.
func TestSameLogSameStateWhateverTheBatches(t *testing.T) {
	defer func(a, b time.Duration, c int64, d int) {
		tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand = a, b, c, d
	}(tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand)
	tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand = 2*time.Minute, time.Minute, 15, 3

	for seed := uint64(1); seed <= 3; seed++ {
		logs := randomLog(seed, 400)
		wantSnap, wantRes := applySplit(t, logs, []int{1})
		for _, what := range []string{"bootstrap no longer allowed", "already exists", "Cannot find", "due to lock delay", "lock is already held", "failed session check", "invalid session"} {
			if !strings.Contains(wantRes, what) {
				t.Fatalf("seed %d: the log never produced %q", seed, what)
			}
		}
		for _, sizes := range [][]int{{400}, {7}, {2, 13, 1, 64}} {
			snap, res := applySplit(t, logs, sizes)
			if res != wantRes {
				t.Fatalf("seed %d, batches %v: answers differ from one-by-one", seed, sizes)
			}
			if !bytes.Equal(snap, wantSnap) {
				t.Fatalf("seed %d, batches %v: state differs from one-by-one (%d vs %d bytes)", seed, sizes, len(snap), len(wantSnap))
			}
		}
	}
}
