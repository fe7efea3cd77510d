package robustness

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math"
	"math/rand/v2"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/anishathalye/porcupine"

	"github.com/raftkv/raftkv/internal/reqtrace"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// recorder collects the history of every client.
type recorder struct {
	start time.Time
	mu    sync.Mutex
	ops   []porcupine.Operation
	// every value ever sent for a key, applied or not: a stale read must
	// return one of these (or nothing).
	attempted map[string]map[string]bool
	staleBad  []string
	okOps     atomic.Int64
	unknown   atomic.Int64
}

func newRecorder() *recorder {
	return &recorder{start: time.Now(), attempted: map[string]map[string]bool{}}
}

func (r *recorder) now() int64 { return time.Since(r.start).Nanoseconds() }

func (r *recorder) attempt(key, value string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.attempted[key] == nil {
		r.attempted[key] = map[string]bool{}
	}
	r.attempted[key][value] = true
}

func (r *recorder) record(client int, in input, call int64, out output, ret int64) {
	if out.Unknown {
		ret = math.MaxInt64 // may take effect at any time after the call
		r.unknown.Add(1)
	} else {
		r.okOps.Add(1)
	}
	r.mu.Lock()
	r.ops = append(r.ops, porcupine.Operation{ClientId: client, Input: in, Call: call, Output: out, Return: ret})
	r.mu.Unlock()
}

func (r *recorder) checkStale(key string, o output) {
	if !o.Exists {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if !r.attempted[key][o.Value] {
		r.staleBad = append(r.staleBad, fmt.Sprintf("stale read of %s returned %q, never written", key, o.Value))
	}
}

// outcome of one HTTP call.
type outcome int

const (
	answered outcome = iota // a response came back
	notSent                 // failed before the request was fully written: nothing happened
	unknown                 // failed after sending: may have happened
)

// clientTimeout bounds one HTTP call of the traffic clients.
const clientTimeout = 3 * time.Second

// node is one client's HTTP connection to its pinned node.
type node struct {
	idx    int
	addr   string
	scheme string // "http://" or "https://"
	hc     *http.Client
	log    *callLog // if set, every call is recorded for the availability check
}

// call makes one request; idem, if set, is sent as its Idempotency-Key.
func (n *node) call(ctx context.Context, method, path string, body []byte, idem ...string) (outcome, int, http.Header, []byte) {
	start := time.Now()
	oc, status, hdr, b := n.callOnce(ctx, method, path, body, idem...)
	if n.log != nil && ctx.Err() == nil { // calls cut short by the end of traffic say nothing
		n.log.add(n.idx, start, status)
	}
	if status == 0 || refusal(status, hdr) {
		time.Sleep(25 * time.Millisecond) // a client's pause before retrying, not synchronisation
	}
	return oc, status, hdr, b
}

func (n *node) callOnce(ctx context.Context, method, path string, body []byte, idem ...string) (outcome, int, http.Header, []byte) {
	ctx, cancel := context.WithTimeout(ctx, clientTimeout)
	defer cancel()
	ctx, trace := reqtrace.With(ctx)
	scheme := n.scheme
	if scheme == "" {
		scheme = "http://"
	}
	req, err := http.NewRequestWithContext(ctx, method, scheme+n.addr+path, bytes.NewReader(body))
	if err != nil {
		panic(err)
	}
	if len(idem) > 0 {
		req.Header.Set("Idempotency-Key", idem[0])
	}
	// Like raftkv's own client, these clients move on rather than wait
	// out a node's hold for a leader: the availability bounds are theirs.
	req.Header.Set(wire.HeaderFailFast, "true")
	resp, err := n.hc.Do(req)
	if err != nil {
		if trace.MayHaveArrived() {
			return unknown, 0, nil, nil
		}
		return notSent, 0, nil, nil
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		return unknown, 0, nil, nil
	}
	return answered, resp.StatusCode, resp.Header, b
}

// writeOutcome turns an answer to a write into a history entry: an error
// answer that says "not applied" (the node had no leader, or was closing)
// is dropped, so a write so answered that did apply shows up as a
// violation; "unknown" and failures after sending are unknown.
func writeOutcome(oc outcome, status int, hdr http.Header) (keep, unknownOutcome bool, err error) {
	switch {
	case oc == notSent, oc == answered && status >= 500 && hdr.Get(wire.HeaderOutcome) == wire.OutcomeNotApplied,
		oc == answered && status == http.StatusServiceUnavailable && hdr.Get(wire.HeaderOutcome) == "":
		return false, false, nil
	case oc == unknown, oc == answered && status >= 500 && hdr.Get(wire.HeaderOutcome) == wire.OutcomeUnknown:
		return true, true, nil
	case oc == answered && (status == 200 || status == 409):
		return true, false, nil
	}
	return false, false, fmt.Errorf("unexpected status %d (%s)", status, hdr.Get(wire.HeaderError))
}

// refusal says an answer is a node's refusal to serve for now: no leader
// (500 naming it) or shutting down (503). Nothing was done.
func refusal(status int, hdr http.Header) bool {
	switch status {
	case http.StatusServiceUnavailable:
		return true
	case http.StatusInternalServerError:
		return hdr.Get(wire.HeaderError) == kv.Code(kv.ErrNoLeader)
	}
	return false
}

type dirEntry struct {
	Value       []byte
	ModifyIndex uint64
}

func (n *node) get(ctx context.Context, key string, stale bool) (output, bool) {
	path := "/v1/kv/" + key
	if stale {
		path += "?stale"
	}
	oc, status, _, body := n.call(ctx, http.MethodGet, path, nil)
	if oc != answered {
		return output{}, false
	}
	switch status {
	case 404:
		return output{}, true
	case 200:
		var es []dirEntry
		if json.Unmarshal(body, &es) != nil || len(es) != 1 {
			return output{}, false
		}
		return output{Exists: true, Value: string(es[0].Value), Index: es[0].ModifyIndex}, true
	}
	return output{}, false
}

func (n *node) write(ctx context.Context, in input) (output, bool, error) {
	var oc outcome
	var status int
	var hdr http.Header
	var body []byte
	switch in.Op {
	case "put":
		if strings.HasSuffix(in.Value, "0") || strings.HasSuffix(in.Value, "5") {
			// Some writes carry a key: a node may then retry them itself
			// after losing track of them, and a double apply would show as
			// a second index for the same value.
			oc, status, hdr, body = n.call(ctx, http.MethodPut, "/v1/kv/"+in.Key, []byte(in.Value), "put-"+in.Value)
		} else {
			oc, status, hdr, body = n.call(ctx, http.MethodPut, "/v1/kv/"+in.Key, []byte(in.Value))
		}
	case "delete":
		oc, status, hdr, body = n.call(ctx, http.MethodDelete, "/v1/kv/"+in.Key, nil)
	case "cas":
		oc, status, hdr, body = n.call(ctx, http.MethodPut, "/v1/kv/"+in.Key+"?cas="+strconv.FormatUint(in.Index, 10), []byte(in.Value))
	case "txn-cas":
		check := fmt.Sprintf(`{"KV":{"Verb":"check-index","Key":%q,"Index":%d}}`, in.Key, in.Index)
		if in.Index == 0 {
			check = fmt.Sprintf(`{"KV":{"Verb":"check-not-exists","Key":%q}}`, in.Key)
		}
		val, _ := json.Marshal([]byte(in.Value))
		txn := fmt.Sprintf(`[%s,{"KV":{"Verb":"set","Key":%q,"Value":%s}}]`, check, in.Key, val)
		oc, status, hdr, body = n.call(ctx, http.MethodPut, "/v1/txn", []byte(txn))
	}
	keep, unk, err := writeOutcome(oc, status, hdr)
	if err != nil || !keep {
		return output{}, false, err
	}
	if unk {
		return output{Unknown: true}, true, nil
	}
	idx, _ := strconv.ParseUint(hdr.Get("X-Consul-Index"), 10, 64)
	ok := status == 200 && (in.Op == "txn-cas" || strings.TrimSpace(string(body)) == "true")
	return output{OK: ok, Index: idx}, true, nil
}

func (n *node) txnGet(ctx context.Context, key string) (output, bool) {
	oc, status, _, body := n.call(ctx, http.MethodPut, "/v1/txn", []byte(fmt.Sprintf(`[{"KV":{"Verb":"get","Key":%q}}]`, key)))
	if oc != answered {
		return output{}, false
	}
	switch status {
	case 409:
		return output{}, true
	case 200:
		var r struct{ Results []struct{ KV dirEntry } }
		if json.Unmarshal(body, &r) != nil || len(r.Results) != 1 {
			return output{}, false
		}
		return output{Exists: true, Value: string(r.Results[0].KV.Value), Index: r.Results[0].KV.ModifyIndex}, true
	}
	return output{}, false
}

// keyFor picks a key of the current rotation: a few keys a second keep
// each checked history small.
func keyFor(r *recorder, rnd *rand.Rand) string {
	epoch := time.Since(r.start) / time.Second
	return fmt.Sprintf("r%d/k%d", epoch, rnd.IntN(3))
}

// client runs until ctx ends: linearizable reads, puts of unique values,
// CAS on the ModifyIndex it last read, deletes, small transactions, and
// stale reads (checked separately).
func client(ctx context.Context, id int, n *node, r *recorder, errs chan<- error) {
	rnd := rand.New(rand.NewPCG(uint64(id), uint64(time.Now().UnixNano())))
	seq := 0
	for ctx.Err() == nil {
		key := keyFor(r, rnd)
		seq++
		value := fmt.Sprintf("c%d-%d", id, seq)
		switch p := rnd.IntN(100); {
		case p < 25: // linearizable get
			call := r.now()
			if o, ok := n.get(ctx, key, false); ok {
				r.record(id, input{Op: "get", Key: key}, call, o, r.now())
			}
		case p < 35: // stale get
			if o, ok := n.get(ctx, key, true); ok {
				r.checkStale(key, o)
			}
		case p < 42: // read-only transaction
			call := r.now()
			if o, ok := n.txnGet(ctx, key); ok {
				r.record(id, input{Op: "get", Key: key}, call, o, r.now())
			}
		case p < 62:
			doWrite(ctx, id, n, r, errs, input{Op: "put", Key: key, Value: value})
		case p < 70:
			doWrite(ctx, id, n, r, errs, input{Op: "delete", Key: key})
		default: // read, then CAS (plain or as a transaction) on what was read
			call := r.now()
			o, ok := n.get(ctx, key, false)
			if !ok {
				continue
			}
			r.record(id, input{Op: "get", Key: key}, call, o, r.now())
			op := "cas"
			if p >= 85 {
				op = "txn-cas"
			}
			doWrite(ctx, id, n, r, errs, input{Op: op, Key: key, Value: value, Index: o.Index})
		}
	}
}

func doWrite(ctx context.Context, id int, n *node, r *recorder, errs chan<- error, in input) {
	if in.Value != "" {
		r.attempt(in.Key, in.Value)
	}
	call := r.now()
	o, keep, err := n.write(ctx, in)
	if err != nil {
		select {
		case errs <- fmt.Errorf("client %d %s %s: %w", id, in.Op, in.Key, err):
		default:
		}
		return
	}
	if !keep {
		return // certainly not applied
	}
	if in.Op == "txn-cas" {
		in.Op = "cas"
	}
	r.record(id, in, call, o, r.now())
}
