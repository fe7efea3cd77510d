package httpd

import (
	"context"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"
	"unicode/utf8"

	"github.com/raftkv/raftkv/api"
	"github.com/raftkv/raftkv/internal/acl"
	"github.com/raftkv/raftkv/kv"
)

// KVStore reads and writes keys (/v1/kv, /v1/txn).
type KVStore interface {
	// Read answers a query, linearizably unless q.Stale; with q.MinIndex,
	// a blocking query.
	Read(ctx context.Context, q kv.Query) (*kv.QueryResult, error)
	// Apply runs a write command on the cluster. A command whose checks
	// fail is not an error: Result.OK is false.
	Apply(ctx context.Context, cmd *kv.Command) (*kv.Result, error)
	// ReadTxn evaluates a read-only command on this node, linearizably
	// unless stale.
	ReadTxn(ctx context.Context, cmd *kv.Command, stale bool) (*kv.Result, error)
}

// keyOf extracts and checks the key from /v1/kv/<key>.
func keyOf(r *http.Request) (string, error) {
	key := strings.TrimPrefix(strings.TrimPrefix(r.URL.Path, "/v1/kv"), "/")
	if !utf8.ValidString(key) {
		return "", fmt.Errorf("%w: key is not valid UTF-8", kv.ErrInvalid)
	}
	if len(key) > kv.MaxKeyBytes {
		return "", fmt.Errorf("%w: key is %d bytes, limit %d", kv.ErrInvalid, len(key), kv.MaxKeyBytes)
	}
	return key, nil
}

func has(q url.Values, name string) bool { _, ok := q[name]; return ok }

// uintParam parses an optional unsigned query parameter.
func uintParam(q url.Values, name string) (uint64, bool, error) {
	if !has(q, name) {
		return 0, false, nil
	}
	v, err := strconv.ParseUint(q.Get(name), 10, 64)
	if err != nil {
		return 0, false, fmt.Errorf("%w: cannot parse %s=%q as an unsigned integer", kv.ErrInvalid, name, q.Get(name))
	}
	return v, true, nil
}

// parseWait accepts Go durations and Consul's bare "Ns"/"Nms"/"Nm" forms;
// a bare number means seconds.
func parseWait(s string) (time.Duration, error) {
	if n, err := strconv.ParseUint(s, 10, 32); err == nil {
		return time.Duration(n) * time.Second, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < 0 {
		return 0, fmt.Errorf("%w: cannot parse wait=%q as a duration", kv.ErrInvalid, s)
	}
	return d, nil
}

// readParams parses what every read takes: consistency and a blocking
// query's index and wait.
func readParams(r *http.Request) (stale bool, index uint64, wait time.Duration, err error) {
	q := r.URL.Query()
	if has(q, "stale") && has(q, "consistent") {
		return false, 0, 0, fmt.Errorf("%w: cannot use stale and consistent together", kv.ErrInvalid)
	}
	if index, _, err = uintParam(q, "index"); err != nil {
		return false, 0, 0, err
	}
	if has(q, "wait") {
		if wait, err = parseWait(q.Get("wait")); err != nil {
			return false, 0, 0, err
		}
	}
	return has(q, "stale"), index, wait, nil
}

func (h *handler) kvGet(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	key, err := keyOf(r)
	if err != nil {
		return err
	}
	stale, index, wait, err := readParams(r)
	if err != nil {
		return err
	}
	query := kv.Query{Kind: kv.ReadGet, Key: key, Stale: stale, MinIndex: index, Wait: wait}
	switch {
	case has(q, "keys"):
		query.Kind, query.Separator = kv.ReadKeys, q.Get("separator")
	case has(q, "recurse"):
		query.Kind = kv.ReadList
	case key == "":
		return fmt.Errorf("%w: missing key (use ?recurse to list every key)", kv.ErrInvalid)
	}
	id := identity(r)
	if query.Kind == kv.ReadGet && !id.KeyRead(key) {
		return id.Denied("key", acl.Read, key)
	}
	res, err := h.kv.Read(r.Context(), query)
	if err != nil {
		return err
	}
	var filtered bool
	if query.Kind == kv.ReadKeys {
		res.Keys, filtered = visible(res.Keys, id.KeyList)
	} else {
		res.Entries, filtered = readable(id, res.Entries)
	}
	markFiltered(w, filtered)
	setQueryHeaders(w, res)
	// A miss is Consul's answer, not an error: 404 with the index to
	// block on, and no body.
	switch {
	case query.Kind == kv.ReadKeys:
		if len(res.Keys) == 0 {
			w.WriteHeader(http.StatusNotFound)
			return nil
		}
		writeJSON(w, http.StatusOK, res.Keys)
	case len(res.Entries) == 0:
		w.WriteHeader(http.StatusNotFound)
	case query.Kind == kv.ReadGet && has(q, "raw"):
		w.Header().Set("Content-Type", "application/octet-stream")
		w.Header().Set("X-Content-Type-Options", "nosniff")
		_, _ = w.Write(res.Entries[0].Value)
	default:
		out := make([]api.DirEntry, len(res.Entries))
		for i, e := range res.Entries {
			out[i] = api.FromEntry(e)
		}
		writeJSON(w, http.StatusOK, out)
	}
	return nil
}

func setQueryHeaders(w http.ResponseWriter, res *kv.QueryResult) {
	setQueryMeta(w, res.Index, res.KnownLeader, res.LastContact, res.Stale)
}

// setQueryMeta sets the headers of every read, Consul's query meta: the
// index to block on, whether this node knows a leader, how long ago it
// heard from it, and the consistency the read had.
func setQueryMeta(w http.ResponseWriter, index uint64, knownLeader bool, lastContact time.Duration, stale bool) {
	hd := w.Header()
	hd.Set("X-Consul-Index", strconv.FormatUint(max(index, 1), 10))
	hd.Set("X-Consul-KnownLeader", strconv.FormatBool(knownLeader))
	hd.Set("X-Consul-LastContact", strconv.FormatInt(lastContact.Milliseconds(), 10))
	if stale {
		hd.Set("X-Consul-Effective-Consistency", "stale")
	} else {
		hd.Set("X-Consul-Effective-Consistency", "consistent")
	}
}

// conflictingFlags refuses a write that combines cas, acquire and release
// (Consul's wording).
func conflictingFlags(r *http.Request) error {
	q := r.URL.Query()
	n := 0
	for _, f := range []string{"cas", "acquire", "release"} {
		if has(q, f) {
			n++
		}
	}
	if n > 1 {
		return kv.Errorf(kv.ErrInvalid, "Conflicting flags: %s", q.Encode())
	}
	return nil
}

// idempotencyKey is the optional Idempotency-Key header of a write: a
// retry carrying the same key gets the first answer and applies nothing.
func idempotencyKey(r *http.Request) string { return r.Header.Get("Idempotency-Key") }

// keyed returns a write command with r's idempotency key, if any, and the
// digest of the request it belongs to (method, path, query and body): the
// same key with a different request is refused (422), not answered with
// the first request's result.
func keyed(r *http.Request, body []byte, ops ...kv.Op) *kv.Command {
	cmd := &kv.Command{Ops: ops, IdempotencyKey: idempotencyKey(r)}
	if cmd.IdempotencyKey != "" {
		h := sha256.New()
		for _, part := range []string{r.Method, r.URL.Path, r.URL.RawQuery} {
			h.Write([]byte(part))
			h.Write([]byte{0})
		}
		h.Write(body)
		cmd.RequestDigest = h.Sum(nil)[:16]
	}
	return cmd
}

func (h *handler) kvPut(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	key, err := keyOf(r)
	if err == nil && key == "" {
		err = fmt.Errorf("%w: missing key", kv.ErrInvalid)
	}
	if err != nil {
		return err
	}
	flags, _, err := uintParam(q, "flags")
	if err != nil {
		return err
	}
	cas, isCAS, err := uintParam(q, "cas")
	if err != nil {
		return err
	}
	if err := conflictingFlags(r); err != nil {
		return err
	}
	value, err := h.readValue(r)
	if err != nil {
		return err
	}
	op := kv.Op{Verb: kv.VerbSet, Key: key, Value: value, Flags: flags}
	switch {
	case isCAS:
		op.Verb, op.Index = kv.VerbCAS, cas
	case has(q, "acquire"):
		op.Verb, op.Session = kv.VerbLock, q.Get("acquire")
	case has(q, "release"):
		op.Verb, op.Session = kv.VerbUnlock, q.Get("release")
	}
	if (op.Verb == kv.VerbLock || op.Verb == kv.VerbUnlock) && op.Session == "" {
		return kv.Errorf(kv.ErrSession, "missing session")
	}
	return h.applyBool(w, r, value, op)
}

// readValue reads the body, refusing more than the value limit.
func (h *handler) readValue(r *http.Request) ([]byte, error) {
	if r.ContentLength > int64(h.maxValue) {
		return nil, fmt.Errorf("%w: value is %d bytes, limit %d", kv.ErrTooLarge, r.ContentLength, h.maxValue)
	}
	b, err := io.ReadAll(io.LimitReader(r.Body, int64(h.maxValue)+1))
	if err != nil {
		return nil, fmt.Errorf("%w: reading body: %v", kv.ErrInvalid, err)
	}
	if len(b) > h.maxValue {
		return nil, fmt.Errorf("%w: value is over the %d-byte limit", kv.ErrTooLarge, h.maxValue)
	}
	return b, nil
}

func (h *handler) kvDelete(w http.ResponseWriter, r *http.Request) error {
	q := r.URL.Query()
	key, err := keyOf(r)
	if err != nil {
		return err
	}
	cas, isCAS, err := uintParam(q, "cas")
	if err != nil {
		return err
	}
	op := kv.Op{Verb: kv.VerbDelete, Key: key}
	switch {
	case has(q, "recurse"): // Consul: recurse wins over cas
		op.Verb = kv.VerbDeleteTree
	case key == "":
		return fmt.Errorf("%w: missing key (use ?recurse to delete a prefix)", kv.ErrInvalid)
	case isCAS:
		op.Verb, op.Index = kv.VerbDeleteCAS, cas
	}
	return h.applyBool(w, r, nil, op)
}

// applyBool runs a one-op write and answers Consul's true/false.
func (h *handler) applyBool(w http.ResponseWriter, r *http.Request, body []byte, op kv.Op) error {
	cmd := keyed(r, body, op)
	id := identity(r)
	// The store validates the write, then runs the token's check on it.
	ctx := kv.WithCheck(r.Context(), func(ops []kv.Op) error { return checkOps(id, ops) })
	res, err := h.kv.Apply(ctx, cmd)
	if err != nil {
		return err
	}
	if !res.OK && len(res.Errors) > 0 && res.Errors[0].InvalidSession {
		return kv.Errorf(kv.ErrSession, "%s", res.Errors[0].What) // Consul: 500, not false
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	if op.Verb != kv.VerbDeleteTree {
		h.setRoute(w, r, op.Key)
	}
	if res.OK {
		_, _ = io.WriteString(w, "true\n")
	} else {
		_, _ = io.WriteString(w, "false\n")
	}
	return nil
}

// txn follows Consul's error model: a request that cannot be read as a
// transaction (not JSON, an unknown verb, a missing key, too big) is
// refused whole with 400 or 413; operations that are well formed but
// cannot apply (a lock without a session, a key the token may not touch,
// a failed check) roll the transaction back and are answered 409 with one
// error per failing operation.
func (h *handler) txn(w http.ResponseWriter, r *http.Request) error {
	limit := int64(kv.MaxTxnOps) * int64(h.maxValue*4/3+kv.MaxKeyBytes+256)
	body, err := io.ReadAll(io.LimitReader(r.Body, limit+1))
	if err != nil {
		return fmt.Errorf("%w: reading body: %v", kv.ErrInvalid, err)
	}
	if int64(len(body)) > limit {
		return fmt.Errorf("%w: transaction body over %d bytes", kv.ErrTooLarge, limit)
	}
	ops, err := decodeTxn(body)
	if err != nil {
		return err
	}
	var failed []api.TxnError
	for i, op := range ops {
		if (op.Verb == kv.VerbLock || op.Verb == kv.VerbUnlock) && op.Session == "" {
			failed = append(failed, api.TxnError{OpIndex: i, What: "missing session"}) // Consul's words
		}
	}
	if len(failed) > 0 {
		return &txnRolledBack{errors: failed}
	}
	cmd := keyed(r, body)
	cmd.Ops = ops
	id := identity(r)
	q := r.URL.Query()
	// The store validates the transaction, then runs this check on it:
	// the token's, op by op, and the query's.
	ctx := kv.WithCheck(r.Context(), func(ops []kv.Op) error {
		var denied []api.TxnError
		for i := range ops {
			if err := checkOps(id, ops[i:i+1]); err != nil {
				denied = append(denied, api.TxnError{OpIndex: i, What: err.Error()})
			}
		}
		if len(denied) > 0 {
			return &txnRolledBack{errors: denied}
		}
		if has(q, "stale") && has(q, "consistent") {
			return fmt.Errorf("%w: cannot use stale and consistent together", kv.ErrInvalid)
		}
		return nil
	})
	var res *kv.Result
	if cmd.ReadOnly() {
		// Nothing to replicate: read on this node, linearizably unless ?stale.
		res, err = h.kv.ReadTxn(ctx, cmd, has(q, "stale"))
	} else {
		res, err = h.kv.Apply(ctx, cmd)
	}
	if err != nil {
		return err
	}
	w.Header().Set("X-Consul-Index", strconv.FormatUint(res.Index, 10))
	if !res.OK {
		for _, e := range res.Errors {
			failed = append(failed, api.TxnError{OpIndex: e.OpIndex, What: e.What})
		}
		return &txnRolledBack{errors: failed}
	}
	entries, filtered := readable(id, res.Entries)
	markFiltered(w, filtered)
	out := api.TxnResponse{Results: make([]api.TxnResult, 0, len(entries))}
	for _, e := range entries {
		out.Results = append(out.Results, api.TxnResult{KV: api.FromEntry(e)})
	}
	writeJSON(w, http.StatusOK, out)
	return nil
}

// decodeTxn reads Consul's transaction array. Its errors name the
// operation and the field at fault, in JSON's terms, not Go's.
func decodeTxn(body []byte) ([]kv.Op, error) {
	var raw []json.RawMessage
	if err := json.Unmarshal(body, &raw); err != nil {
		return nil, fmt.Errorf("%w: malformed transaction: want a JSON array of operations (%s)", kv.ErrInvalid, jsonProblem(err))
	}
	if len(raw) > kv.MaxTxnOps {
		return nil, fmt.Errorf("%w: transaction has %d operations, at most %d", kv.ErrTooLarge, len(raw), kv.MaxTxnOps)
	}
	ops := make([]kv.Op, 0, len(raw))
	for i, m := range raw {
		var op api.TxnOp
		if err := json.Unmarshal(m, &op); err != nil {
			return nil, fmt.Errorf("%w: operation %d: %s", kv.ErrInvalid, i, jsonProblem(err))
		}
		if op.KV == nil {
			return nil, fmt.Errorf("%w: operation %d: only KV operations are supported", kv.ErrInvalid, i)
		}
		verb, err := kv.ParseVerb(op.KV.Verb)
		if err != nil {
			return nil, fmt.Errorf("%w: operation %d: unknown verb %q", kv.ErrInvalid, i, op.KV.Verb)
		}
		ops = append(ops, kv.Op{Verb: verb, Key: op.KV.Key, Value: op.KV.Value, Flags: op.KV.Flags, Index: op.KV.Index, Session: op.KV.Session})
	}
	return ops, nil
}
