package fsm

import (
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/hashicorp/raft"

	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// legacyEdgeCases are legacy (v1/v2) entries that no correct proposer
// writes but that a log may hold, and that the versions which wrote them
// applied in a particular way: bodies that do not parse, internal verbs
// with an idempotency key, a digest or stray fields, internal verbs among
// other ops. Nodes of every version must keep applying them alike.
func legacyEdgeCases(first uint64, at time.Duration) []*raft.Log {
	session := EncodeSession(&kv.Session{Node: "n1", Behavior: kv.BehaviorRelease, LockDelay: time.Second})
	cmds := []kv.Command{
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "bad", Value: []byte{1, 2}}}, IdempotencyKey: "edge-1"},
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "bad", Value: nil}}},
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "e1", Value: session, Key: "stray", Flags: 3, Index: 9}}},
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "e1", Value: []byte("garbage")}}}, // exists: that answer first
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Value: session}}},                          // no ID (v1)
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "e2", Value: session}}, IdempotencyKey: "edge-2", RequestDigest: []byte("d1")},
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "e3", Value: session}}, IdempotencyKey: "edge-2", RequestDigest: []byte("d2")},
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "e3", Value: session}}, IdempotencyKey: "edge-2", RequestDigest: []byte("d1")},
		{Ops: []kv.Op{{Verb: kv.VerbLock, Key: "edge/l", Session: "e1", Value: []byte("v")}}},
		{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy, Session: "e1", Key: "stray", Value: []byte("x")}}, IdempotencyKey: "edge-3"},
		{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy, Session: "e1"}}, IdempotencyKey: "edge-3"},
		{Ops: []kv.Op{{Verb: kv.VerbSessionDestroy}}},
		{Ops: []kv.Op{{Verb: kv.VerbSessionCreate, Session: "e4", Value: session}, {Verb: kv.VerbSet, Key: "edge/k"}}},
		{Ops: []kv.Op{{Verb: kv.VerbSet, Key: "edge/k"}, {Verb: kv.VerbACL, Value: []byte("{}")}}},
		{Ops: []kv.Op{{Verb: kv.VerbReadReplica, Key: "r1", Value: []byte("x"), Session: "s", Flags: 1}}},
		{Ops: []kv.Op{{Verb: kv.VerbReadReplica, Key: "r2", Value: []byte("1")}}, IdempotencyKey: "edge-4"},
		{Ops: []kv.Op{{Verb: kv.VerbReadReplica, Key: "r2"}}, IdempotencyKey: "edge-4"},
		{Ops: []kv.Op{{Verb: kv.VerbReadReplica, Key: "r1"}}, RequestDigest: []byte("only a digest")},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: []byte("{")}}, IdempotencyKey: "edge-5"},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: []byte(`{"Op": 5}`)}}},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: []byte("null")}}},
		{Ops: []kv.Op{{Verb: kv.VerbACL}}},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: []byte(`{"op":"peer-secret","id":"edge-secret","Unknown":1}`)}}, IdempotencyKey: "edge-6"},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: EncodeACLCommand(&acl.Command{Op: acl.OpPolicyDelete, ID: acl.GlobalManagementID})}}, IdempotencyKey: "edge-7"},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: EncodeACLCommand(&acl.Command{Op: acl.OpPolicySet, Create: true,
			Policy: &acl.Policy{ID: "edge-p", Name: "edge", Description: "d", Rules: "x", CreateIndex: 5, ModifyIndex: 6}})}}, IdempotencyKey: "edge-8", RequestDigest: []byte("d")},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: EncodeACLCommand(&acl.Command{Op: acl.OpTokenSet, Create: true, Token: &acl.Token{
			AccessorID: "edge-t", SecretID: "edge-s", Description: "d", Local: true, Policies: []acl.PolicyLink{{Name: "edge"}, {ID: "edge-p"}},
			CreateTime: time.Date(2020, 1, 2, 3, 4, 5, 6, time.FixedZone("", 3600)), CreateIndex: 1, ModifyIndex: 2}})}}},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: []byte(`{"Op":"token-set","Token":{"AccessorID":"edge-t","Description":"again","Policies":null}}`)}}},
		{Ops: []kv.Op{{Verb: kv.VerbACL, Value: []byte(`{"Op":"token-set","Token":{"AccessorID":"edge-t","Policies":[]}}`)}}},
	}
	var logs []*raft.Log
	for i := range cmds {
		c := cmds[i]
		c.Time = t0.Add(at + time.Duration(i)*time.Second)
		if i == 4 {
			c.Time = time.Time{} // the state machine's clock stays
		}
		logs = append(logs, &raft.Log{Index: first + uint64(i), Term: 1, Type: raft.LogCommand, Data: EncodeCommand(&c)})
	}
	for i, data := range [][]byte{{}, {1}, {1, 0xff}, {2, 0, 0, 0, 1, 14}, {9, 1, 2}} {
		logs = append(logs, &raft.Log{Index: first + uint64(len(cmds)+i), Term: 1, Type: raft.LogCommand, Data: data})
	}
	return logs
}

// legacyWorkload is a long random legacy log followed by the edge cases.
func legacyWorkload() []*raft.Log {
	logs := randomLog(1, 400)
	last := logs[len(logs)-1]
	c, err := DecodeCommand(last.Data)
	if err != nil {
		panic(err)
	}
	return append(logs, legacyEdgeCases(last.Index+1, c.Time.Sub(t0)+time.Second)...)
}

// lineNotifier writes every notification down, in order.
type lineNotifier struct {
	mu sync.Mutex
	b  strings.Builder
}

func (n *lineNotifier) KeysChanged(keys []string) {
	n.mu.Lock()
	fmt.Fprintf(&n.b, "keys %q\n", keys)
	n.mu.Unlock()
}
func (n *lineNotifier) SessionsChanged() { n.mu.Lock(); n.b.WriteString("sessions\n"); n.mu.Unlock() }
func (n *lineNotifier) AllChanged()      { n.mu.Lock(); n.b.WriteString("all\n"); n.mu.Unlock() }

// applyAll applies logs in batches of the given sizes (cycled) to a new
// FSM and returns its full snapshot, every answer and every notification.
func applyAll(t *testing.T, logs []*raft.Log, sizes []int) (snap []byte, answers, notes string) {
	t.Helper()
	n := &lineNotifier{}
	f, err := Open(t.TempDir(), Options{Small: true, Notify: n})
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	var res strings.Builder
	for i, s := 0, 0; i < len(logs); s++ {
		k := min(sizes[s%len(sizes)], len(logs)-i)
		for _, r := range f.ApplyBatch(logs[i : i+k]) {
			fmt.Fprintf(&res, "%+v\n", r)
		}
		i += k
	}
	var buf bytes.Buffer
	if _, err := f.WriteSnapshot(&buf); err != nil {
		t.Fatal(err)
	}
	return withoutLogVersion(t, buf.Bytes()), res.String(), n.b.String()
}

func shortHash(b []byte) string {
	h := sha256.Sum256(b)
	return hex.EncodeToString(h[:8])
}

// Recorded with the state machine as it was before typed entries (commit
// fd8fb58): the legacy workload's state, answers and notifications. Every
// later version must apply the same legacy log to the same bytes.
const (
	goldenLegacySnapshot      = "195b214af684b414"
	goldenLegacyAnswers       = "2137881699cf61d9"
	goldenLegacyNotifications = "e0dccbe94062c628"
)

// goldenBatches are the batch sizes the recorded hashes were taken with
// (notifications come per batch).
var goldenBatches = []int{1, 5, 64}

func withSmallTTLs(t *testing.T) {
	t.Helper()
	a, b, c, d := tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand
	t.Cleanup(func() { tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand = a, b, c, d })
	tombstoneTTL, idempotencyTTL, maxIdempotencyKeys, maxExpiryPerCommand = 2*time.Minute, time.Minute, 15, 3
}

// TestLegacyLogAppliesAsBefore: a legacy log gives, byte for byte, the state,
// answers and notifications the versions that wrote it gave.
func TestLegacyLogAppliesAsBefore(t *testing.T) {
	withSmallTTLs(t)
	snap, answers, notes := applyAll(t, legacyWorkload(), goldenBatches)
	got := [3]string{shortHash(snap), shortHash([]byte(answers)), shortHash([]byte(notes))}
	want := [3]string{goldenLegacySnapshot, goldenLegacyAnswers, goldenLegacyNotifications}
	if got != want {
		t.Logf("answers:\n%s", answers[max(0, len(answers)-6000):])
		t.Fatalf("legacy log applied differently: snapshot/answers/notifications hashes %q, recorded %q", got, want)
	}
}

// rewrite writes every entry of logs that DecodeEntry reads again with
// encode (entries it cannot read are kept as they are) and counts the
// entries whose bytes changed.
func rewrite(t *testing.T, logs []*raft.Log, encode func(i int, e *Entry) []byte) ([]*raft.Log, int) {
	t.Helper()
	out := make([]*raft.Log, len(logs))
	changed := 0
	for i, l := range logs {
		cp := *l
		if e, err := DecodeEntry(l.Data); err == nil && l.Type == raft.LogCommand {
			cp.Data = encode(i, e)
		}
		if !bytes.Equal(cp.Data, l.Data) {
			changed++
		}
		out[i] = &cp
	}
	return out, changed
}

// TestV3LogAppliesAsLegacy: the same workload written in the legacy form,
// in v3, and mixed (as a log is across an upgrade) gives the same state,
// answers and notifications, whatever the batches; and for the recorded
// workload the same bytes as the versions before typed entries.
func TestV3LogAppliesAsLegacy(t *testing.T) {
	withSmallTTLs(t)
	for seed := uint64(1); seed <= 3; seed++ {
		logs := randomLog(seed, 400)
		last := logs[len(logs)-1]
		c, err := DecodeCommand(last.Data)
		if err != nil {
			t.Fatal(err)
		}
		// What proposers wrote, EncodeLegacyEntry still writes byte for
		// byte (the edge cases' stray fields and odd JSON it does not).
		if again, n := rewrite(t, logs, func(_ int, e *Entry) []byte { return EncodeLegacyEntry(e) }); n != 0 {
			for i := range logs {
				if !bytes.Equal(again[i].Data, logs[i].Data) {
					t.Errorf("entry %d: legacy %x, written again %x", logs[i].Index, logs[i].Data, again[i].Data)
				}
			}
			t.Fatalf("seed %d: EncodeLegacyEntry does not write %d legacy entries as they were", seed, n)
		}
		logs = append(logs, legacyEdgeCases(last.Index+1, c.Time.Sub(t0)+time.Second)...)
		v3, changed := rewrite(t, logs, func(_ int, e *Entry) []byte { return EncodeEntry(e) })
		if changed < 100 {
			t.Fatalf("seed %d: only %d entries differ in v3", seed, changed)
		}
		half := len(logs) / 2
		mixed, _ := rewrite(t, logs, func(i int, e *Entry) []byte {
			if i < half && i%3 != 0 {
				return EncodeLegacyEntry(e)
			}
			return EncodeEntry(e)
		})
		var firstSnap []byte
		var firstAnswers string
		for _, sizes := range [][]int{goldenBatches, {1}, {3, 17, 64}} {
			// Notifications come per batch: compared between runs of the
			// same batches only.
			wantSnap, wantAnswers, wantNotes := applyAll(t, logs, sizes)
			for _, run := range []struct {
				name string
				logs []*raft.Log
			}{{"v3", v3}, {"mixed", mixed}} {
				snap, answers, notes := applyAll(t, run.logs, sizes)
				if answers != wantAnswers {
					t.Fatalf("seed %d, %s log, batches %v: answers differ from the legacy log's", seed, run.name, sizes)
				}
				if notes != wantNotes {
					t.Fatalf("seed %d, %s log, batches %v: notifications differ from the legacy log's", seed, run.name, sizes)
				}
				if !bytes.Equal(snap, wantSnap) {
					t.Fatalf("seed %d, %s log, batches %v: state differs from the legacy log's (%d vs %d bytes)", seed, run.name, sizes, len(snap), len(wantSnap))
				}
			}
			if firstSnap == nil {
				firstSnap, firstAnswers = wantSnap, wantAnswers
			} else if !bytes.Equal(wantSnap, firstSnap) || wantAnswers != firstAnswers {
				t.Fatalf("seed %d, batches %v: state or answers differ from one by one", seed, sizes)
			}
			if seed == 1 && fmt.Sprint(sizes) == fmt.Sprint(goldenBatches) {
				got := [3]string{shortHash(wantSnap), shortHash([]byte(wantAnswers)), shortHash([]byte(wantNotes))}
				if got != [3]string{goldenLegacySnapshot, goldenLegacyAnswers, goldenLegacyNotifications} {
					t.Fatalf("the recorded workload gives hashes %q", got)
				}
			}
		}
	}
}
