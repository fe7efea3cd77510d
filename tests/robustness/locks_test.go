package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"net/http"
	"sort"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// Lock traffic: a few clients, each with a TTL session on its pinned node,
// contend for two lock keys at a time (rotating every few seconds, so each
// key's history stays small), and while holding one write fenced values
// (txn check-session + set). Checked with lockModel, plus the session
// promise that a session renewed less than TTL ago is never gone.
const (
	lockTTL   = 10 * time.Second // Consul's default minimum
	lockDelay = time.Second
	// shortLockTTL: what Traefik's valkeyrie store uses, with the nodes'
	// -session-ttl-min at 1s (scenarios with shortTTL).
	shortLockTTL = time.Second
)

type lockRecorder struct {
	start time.Time
	ttl   time.Duration // of every lock client's sessions; renewed every ttl/5
	mu    sync.Mutex
	ops   []porcupine.Operation
	// sessions every lock client created, and those it saw end (its node
	// removed, TTL, node health): a client's own destroy never happens.
	created []string
	early   []string // a session gone less than TTL after a renew that succeeded
	okOps   int
	// sessions left to expire by TTL, and when they went
	abandoned []abandoned
	expiring  sync.WaitGroup
}

func (r *lockRecorder) now() int64 { return time.Since(r.start).Nanoseconds() }

func (r *lockRecorder) record(client int, in lockInput, call int64, out lockOutput, ret int64) {
	if out.Unknown {
		ret = math.MaxInt64
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !out.Unknown {
		r.okOps++
	}
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
}

// lockClient is one contender; its session lives on its pinned node.
type lockClient struct {
	id int
	// abandonAt, if set: at that time the client stops renewing its session
	// (holding whatever it holds) and goes on with a new one, so that the
	// cluster must expire the old one by TTL. TTL-only sessions then.
	abandonAt time.Time
	n         *node
	r         *lockRecorder
	rnd       *rand.Rand
	session   string
	renewed   time.Time // when the last renew that succeeded (or the create) was sent
	holding   string    // the key this client believes it holds
}

func (c *lockClient) run(ctx context.Context, errs chan<- error) {
	seq := 0
	for ctx.Err() == nil {
		if c.session == "" {
			c.createSession(ctx)
			continue
		}
		if !c.abandonAt.IsZero() && time.Now().After(c.abandonAt) {
			c.abandon(ctx)
			continue
		}
		if time.Since(c.renewed) > c.r.ttl/5 && !c.renew(ctx) {
			continue
		}
		key := fmt.Sprintf("lock/r%d/%c", time.Since(c.r.start)/(3*time.Second), 'a'+rune(c.rnd.IntN(2)))
		seq++
		value := fmt.Sprintf("l%d-%d", c.id, seq)
		var err error
		switch {
		case c.holding != "" && (c.holding != key || c.rnd.IntN(4) == 0):
			err = c.op(ctx, lockInput{Op: "release", Key: c.holding, Session: c.session})
		case c.holding != "" && c.rnd.IntN(3) == 0:
			err = c.op(ctx, lockInput{Op: "get", Key: c.holding})
		case c.holding != "":
			err = c.op(ctx, lockInput{Op: "fenced", Key: c.holding, Session: c.session, Value: value})
		case c.rnd.IntN(3) == 0:
			err = c.op(ctx, lockInput{Op: "get", Key: key})
		default:
			err = c.op(ctx, lockInput{Op: "acquire", Key: key, Session: c.session, Value: value})
		}
		if err != nil {
			select {
			case errs <- fmt.Errorf("lock client %d: %w", c.id, err):
			default:
			}
			return
		}
	}
}

func (c *lockClient) createSession(ctx context.Context) {
	sent := time.Now()
	body := fmt.Sprintf(`{"Name":"lock-client-%d","TTL":%q,"LockDelay":%q}`, c.id, c.r.ttl, lockDelay)
	if !c.abandonAt.IsZero() {
		body = fmt.Sprintf(`{"Name":"lock-client-%d","TTL":%q,"LockDelay":%q,"NodeChecks":[]}`, c.id, c.r.ttl, lockDelay)
	}
	oc, status, _, b := c.n.call(ctx, http.MethodPut, "/v1/session/create", []byte(body))
	if oc != answered || status != 200 {
		return // 503 or unknown: an unknown session that nobody uses is harmless
	}
	var out struct{ ID string }
	if json.Unmarshal(b, &out) != nil || out.ID == "" {
		return
	}
	c.session, c.renewed, c.holding = out.ID, sent, ""
	c.r.mu.Lock()
	c.r.created = append(c.r.created, out.ID)
	c.r.mu.Unlock()
}

// abandon leaves the session to expire, and times its end.
func (c *lockClient) abandon(ctx context.Context) {
	c.abandonAt = time.Time{}
	id, renewed := c.session, c.renewed
	c.session, c.holding = "", ""
	c.r.expiring.Add(1)
	go func() {
		defer c.r.expiring.Done()
		gone := watchSessionEnd(ctx, c.n, id)
		c.r.mu.Lock()
		defer c.r.mu.Unlock()
		c.r.abandoned = append(c.r.abandoned, abandoned{id: id, renewed: renewed, gone: gone})
	}()
}

type abandoned struct {
	id      string
	renewed time.Time // when its last successful renew was sent
	gone    time.Time // when a blocking query first saw it gone (zero: never)
}

// watchSessionEnd follows a session with blocking queries until it is gone
// (returning when that was seen) or ctx ends (zero time).
func watchSessionEnd(ctx context.Context, n *node, id string) time.Time {
	index := "0"
	for ctx.Err() == nil {
		oc, status, hdr, body := n.call(ctx, http.MethodGet, "/v1/session/info/"+id+"?wait=5s&index="+index, nil)
		if oc != answered || status != 200 {
			continue
		}
		if strings.TrimSpace(string(body)) == "[]" || strings.TrimSpace(string(body)) == "null" {
			return time.Now()
		}
		index = hdr.Get("X-Consul-Index")
	}
	return time.Time{}
}

// renew reports whether the session is still usable.
func (c *lockClient) renew(ctx context.Context) bool {
	sent := time.Now()
	oc, status, _, _ := c.n.call(ctx, http.MethodPut, "/v1/session/renew/"+c.session, nil)
	switch {
	case oc == answered && status == 200:
		c.renewed = sent
	case oc == answered && status == 404:
		c.lost()
		return false
	case time.Since(c.renewed) >= c.r.ttl:
		// Cut off for TTL: the cluster may invalidate it from now on, so
		// the client stops using it, as client.Lock does.
		c.session, c.holding = "", ""
		return false
	}
	return true
}

// lost: the session is gone. Less than TTL after a successful renew was
// sent, that breaks the session promise.
func (c *lockClient) lost() {
	if gone := time.Since(c.renewed); gone < c.r.ttl {
		c.r.mu.Lock()
		c.r.early = append(c.r.early, fmt.Sprintf("session %s of client %d gone %s after a renew", c.session, c.id, gone.Round(time.Millisecond)))
		c.r.mu.Unlock()
	}
	c.session, c.holding = "", ""
}

// op runs one lock operation and records it.
func (c *lockClient) op(ctx context.Context, in lockInput) error {
	call := c.r.now()
	var oc outcome
	var status int
	var hdr http.Header
	var body []byte
	switch in.Op {
	case "get":
		oc, status, _, body = c.n.call(ctx, http.MethodGet, "/v1/kv/"+in.Key, nil)
		if oc != answered || (status != 200 && status != 404) {
			return nil
		}
		o := lockOutput{}
		if status == 200 {
			var es []struct {
				Value     []byte
				Session   string
				LockIndex uint64
			}
			if err := json.Unmarshal(body, &es); err != nil || len(es) != 1 {
				return fmt.Errorf("get %s: %q", in.Key, body)
			}
			o = lockOutput{Exists: true, Value: string(es[0].Value), Session: es[0].Session, LockIndex: es[0].LockIndex}
		}
		c.r.record(c.id, in, call, o, c.r.now())
		if in.Key == c.holding && o.Session != c.session {
			c.holding = "" // invalidated under us
		}
		return nil
	case "acquire", "release":
		oc, status, hdr, body = c.n.call(ctx, http.MethodPut, "/v1/kv/"+in.Key+"?"+in.Op+"="+in.Session, []byte(in.Value))
	case "fenced":
		val, _ := json.Marshal([]byte(in.Value))
		txn := fmt.Sprintf(`[{"KV":{"Verb":"check-session","Key":%q,"Session":%q}},{"KV":{"Verb":"set","Key":%q,"Value":%s}}]`, in.Key, in.Session, in.Key, val)
		oc, status, hdr, body = c.n.call(ctx, http.MethodPut, "/v1/txn", []byte(txn))
	}
	if oc == answered && status == 500 && strings.Contains(string(body), "invalid session") {
		c.lost() // refused: nothing happened
		return nil
	}
	if in.Op == "fenced" && oc == answered && status == 409 {
		c.r.record(c.id, in, call, lockOutput{}, c.r.now())
		c.holding = ""
		return nil
	}
	keep, unk, err := writeOutcome(oc, status, hdr)
	if err != nil {
		return fmt.Errorf("%s %s: %w: %s", in.Op, in.Key, err, body)
	}
	if !keep {
		return nil
	}
	o := lockOutput{Unknown: unk, OK: !unk && (in.Op == "fenced" || strings.TrimSpace(string(body)) == "true")}
	if in.Op == "fenced" && o.OK {
		var res struct {
			Results []struct{ KV struct{ LockIndex uint64 } }
		}
		if err := json.Unmarshal(body, &res); err != nil || len(res.Results) != 2 {
			return fmt.Errorf("fenced write %s: %q", in.Key, body)
		}
		o.LockIndex = res.Results[1].KV.LockIndex // the tenure it was written under
	}
	c.r.record(c.id, in, call, o, c.r.now())
	switch {
	case unk:
		// Whether it holds is learnt by the next get of the key.
		if in.Op == "acquire" {
			c.holding = ""
		}
	case in.Op == "acquire" && o.OK:
		c.holding = in.Key
	case in.Op == "release":
		c.holding = ""
	}
	return nil
}

// mortalSessions are the sessions the lock clients created that no longer
// exist (read linearizably from addr): the cluster invalidated them.
func mortalSessions(ctx context.Context, n *node, r *lockRecorder) (map[string]bool, error) {
	oc, status, _, body := n.call(ctx, http.MethodGet, "/v1/session/list", nil)
	if oc != answered || status != 200 {
		return nil, fmt.Errorf("session list: %d", status)
	}
	var list []struct{ ID string }
	if err := json.Unmarshal(body, &list); err != nil {
		return nil, fmt.Errorf("session list: %w", err)
	}
	alive := map[string]bool{}
	for _, s := range list {
		alive[s.ID] = true
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	mortal := map[string]bool{}
	for _, id := range r.created {
		if !alive[id] {
			mortal[id] = true
		}
	}
	return mortal, nil
}

// lockCheckSetup reads which sessions the cluster invalidated, once the
// traffic is over and the cluster converged.
func lockCheckSetup(t *testing.T, c *proccluster.Cluster, r *lockRecorder) map[string]bool {
	var mortal map[string]bool
	testsupport.WaitFor(t, 10*time.Second, "the session list", func() error {
		for i, p := range c.Procs {
			if p.Running() {
				var err error
				mortal, err = mortalSessions(context.Background(), &node{idx: i, addr: p.Addr, scheme: c.URL("", ""), hc: c.HTTPClient(0)}, r)
				return err
			}
		}
		return fmt.Errorf("no node running")
	})
	return mortal
}

// checkLocks runs the lock model over the lock clients' history and the
// session promise.
func checkLocks(t *testing.T, sc scenario, r *lockRecorder, mortal map[string]bool, c *proccluster.Cluster) {
	r.expiring.Wait()
	r.mu.Lock()
	defer r.mu.Unlock()
	t.Logf("%s: %d lock operations recorded (%d certain), %d sessions, %d invalidated by the cluster",
		sc.name, len(r.ops), r.okOps, len(r.created), len(mortal))
	if r.okOps == 0 {
		t.Error("no lock operation completed")
	}
	if !sc.sessionsMayEnd {
		for _, e := range r.early {
			t.Error(e)
		}
	}
	for _, a := range r.abandoned {
		switch held := a.gone.Sub(a.renewed); {
		case a.gone.IsZero():
			t.Errorf("session %s, not renewed since %s before the end, was never invalidated", a.id, time.Since(a.renewed).Round(time.Second))
		case held < r.ttl:
			t.Errorf("session %s invalidated %s after its last renew, before its TTL (%s)", a.id, held.Round(time.Millisecond), r.ttl)
		default:
			t.Logf("session %s left to expire: gone %s after its last renew (TTL %s)", a.id, held.Round(time.Millisecond), r.ttl)
		}
	}
	for _, v := range exclusionViolations(r.ops) {
		t.Error(v)
	}
	m := lockModel(mortal)
	res, info := porcupine.CheckOperationsVerbose(m, r.ops, 2*time.Minute)
	if res != porcupine.Ok {
		t.Errorf("lock linearizability check: %v", res)
		keepFailure(t, sc.name+"-locks", m, info, c)
	}
}

// exclusionViolations checks mutual exclusion directly, without the model:
// every successful fenced write says under which LockIndex it landed; one
// LockIndex must belong to one session, and a fenced write or read that
// follows another in real time must not see a lower LockIndex (tenures do
// not interleave, and LockIndex only grows).
func exclusionViolations(ops []porcupine.Operation) []string {
	type seen struct {
		call, ret int64
		index     uint64
		session   string
	}
	byKey := map[string][]seen{}
	owner := map[string]map[uint64]string{}
	var out []string
	for _, op := range ops {
		in, o := op.Input.(lockInput), op.Output.(lockOutput)
		var sess string
		switch {
		case in.Op == "fenced" && o.OK:
			sess = in.Session
		case in.Op == "get" && o.Exists && o.Session != "":
			sess = o.Session
		default:
			continue
		}
		if owner[in.Key] == nil {
			owner[in.Key] = map[uint64]string{}
		}
		if prev, ok := owner[in.Key][o.LockIndex]; ok && prev != sess {
			out = append(out, fmt.Sprintf("%s: LockIndex %d held by two sessions, %.8s and %.8s", in.Key, o.LockIndex, prev, sess))
		}
		owner[in.Key][o.LockIndex] = sess
		byKey[in.Key] = append(byKey[in.Key], seen{op.Call, op.Return, o.LockIndex, sess})
	}
	for key, list := range byKey {
		sort.Slice(list, func(i, j int) bool { return list[i].ret < list[j].ret })
		// Walking by return time, the highest index returned so far must
		// not exceed the index of any operation called after that return.
		maxRet := uint64(0)
		j := 0
		byCall := append([]seen(nil), list...)
		sort.Slice(byCall, func(i, j int) bool { return byCall[i].call < byCall[j].call })
		for _, s := range byCall {
			for j < len(list) && list[j].ret < s.call {
				maxRet = max(maxRet, list[j].index)
				j++
			}
			if s.index < maxRet {
				out = append(out, fmt.Sprintf("%s: LockIndex went back from %d to %d (session %.8s)", key, maxRet, s.index, s.session))
			}
		}
	}
	return out
}
