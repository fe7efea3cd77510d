package robustness

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	rkclient "github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/kv"
)

// The holders of TestLockHoldersView: each kind of raftkv lock client, and
// the watcher that reads what the cluster says.

// viewPrefix holds every lock key of the scenario, so that one recursive
// read sees them all at one point of the log.
const viewPrefix = "lockview/"

// now is the time of every event of the history: wall clock, the one the
// raftkv lock commands read with date(1), without Go's monotonic reading,
// so that every comparison is on the same clock.
func now() time.Time { return time.Now().Round(0) }

type holderKind int

const (
	kindLock       holderKind = iota // client.Lock
	kindElection                     // client.Election.Campaign
	kindSemaphore                    // client.Semaphore, limit 1
	kindOwnSession                   // client.Lock on a session made with NoChecks
	kindCLI                          // raftkv lock PREFIX -- sh -c ...
	kindConsul                       // consul/api's Lock (lockview_consul_test.go)
)

func (k holderKind) String() string {
	return [...]string{"Lock", "Election", "Semaphore", "Lock on a NoChecks session", "raftkv lock", "consul/api Lock"}[k]
}

// noLockDelay is the smallest lock-delay the server takes as given: it
// reads values below 1000 (ns) as seconds (Consul's rule), so a client's
// "tiny positive" 1ns would be a second.
const noLockDelay = time.Microsecond

// keySpec is one contended key and the kind of client both its holder and
// its contender use.
type keySpec struct {
	name      string
	kind      holderKind
	lockDelay time.Duration // 0: the server's default (15s)
	// failover: the holder's client has the other nodes as further
	// endpoints, so it can go on renewing through them (kind (b)).
	failover bool
	// mustMove: the holder cannot renew once cut off, so the lock must
	// reach the contender.
	mustMove bool
}

func (s keySpec) prefix() string { return viewPrefix + s.name }

// lockKey is the key whose lock is taken (a semaphore's is its holder list).
func (s keySpec) lockKey() string {
	if s.kind == kindCLI || s.kind == kindSemaphore {
		return s.prefix() + "/.lock"
	}
	return s.prefix()
}

func (s keySpec) effectiveLockDelay() time.Duration {
	if s.lockDelay == 0 {
		return kv.DefaultLockDelay
	}
	return s.lockDelay
}

// viewEntry is a KV entry as GET /v1/kv answers it.
type viewEntry struct {
	Key       string
	Value     []byte
	Session   string
	LockIndex uint64
}

// observe reads the key's holders out of one read of the whole prefix.
func (s keySpec) observe(call, ret time.Time, entries []viewEntry) observation {
	o := observation{Call: call, Return: ret}
	if s.kind != kindSemaphore {
		for _, e := range entries {
			if e.Key == s.lockKey() && e.Session != "" {
				o.Held = append(o.Held, tenure{Session: e.Session, Index: e.LockIndex})
			}
		}
		return o
	}
	// A semaphore slot is held by a session in the holder list whose
	// contender key it still holds (client.Semaphore's own rule).
	var list struct{ Holders map[string]bool }
	live := map[string]bool{}
	for _, e := range entries {
		switch {
		case e.Key == s.lockKey():
			_ = json.Unmarshal(e.Value, &list)
		case e.Session != "" && e.Key == path.Join(s.prefix(), e.Session):
			live[e.Session] = true
		}
	}
	for id, in := range list.Holders {
		if in && live[id] {
			o.Held = append(o.Held, tenure{Session: id})
		}
	}
	return o
}

// viewHistory is what the scenario records.
type viewHistory struct {
	mu        sync.Mutex
	holdings  []holding
	reads     map[string][]observation
	lastReads time.Time // when the latest read returned
}

func (h *viewHistory) addHolding(x holding) {
	h.mu.Lock()
	defer h.mu.Unlock()
	h.holdings = append(h.holdings, x)
}

func (h *viewHistory) addRead(specs []keySpec, call, ret time.Time, entries []viewEntry) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.reads == nil {
		h.reads = map[string][]observation{}
	}
	for _, s := range specs {
		h.reads[s.name] = append(h.reads[s.name], s.observe(call, ret, entries))
	}
	h.lastReads = ret
}

// snapshot returns the history recorded so far.
func (h *viewHistory) snapshot() ([]holding, map[string][]observation) {
	h.mu.Lock()
	defer h.mu.Unlock()
	return append([]holding(nil), h.holdings...), h.reads
}

func (h *viewHistory) lastRead(key string) (observation, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	list := h.reads[key]
	if len(list) == 0 {
		return observation{}, false
	}
	return list[len(list)-1], true
}

// watch reads every lock key linearizably from n until ctx ends, recording
// each read's call and return: the cluster's side of the history.
func watch(ctx context.Context, n *node, specs []keySpec, hist *viewHistory) {
	for ctx.Err() == nil {
		call := now()
		oc, status, _, body := n.call(ctx, http.MethodGet, "/v1/kv/"+viewPrefix+"?recurse", nil)
		ret := now()
		if oc != answered || (status != 200 && status != 404) {
			continue // not answered, or no leader: no observation (call pauses)
		}
		var entries []viewEntry
		if status == 200 && json.Unmarshal(body, &entries) != nil {
			continue
		}
		hist.addRead(specs, call, ret, entries)
		// A read every few milliseconds: far finer than any timing in play
		// (seconds), and light on a machine with two cores.
		select {
		case <-ctx.Done():
		case <-time.After(5 * time.Millisecond):
		}
	}
}

// sessionTap records, for one Go client, the sessions it created and every
// renew it sent with its answer: what the client cannot tell from outside.
type sessionTap struct {
	next    *http.Transport
	mu      sync.Mutex
	created []string
	// creates are the session creates that succeeded, as renews: a
	// client counts its first lease from when it sent the create.
	creates []renewRecord
	renews  []renewRecord
}

func newSessionTap() *sessionTap {
	// As the client's own default transport.
	return &sessionTap{next: &http.Transport{
		DialContext:         (&net.Dialer{Timeout: 2 * time.Second, KeepAlive: 30 * time.Second}).DialContext,
		MaxIdleConnsPerHost: 64,
		IdleConnTimeout:     90 * time.Second,
	}}
}

func (s *sessionTap) RoundTrip(r *http.Request) (*http.Response, error) {
	renew := r.Method == http.MethodPut && strings.HasPrefix(r.URL.Path, "/v1/session/renew/")
	create := r.Method == http.MethodPut && r.URL.Path == "/v1/session/create"
	sent := now()
	resp, err := s.next.RoundTrip(r)
	if !renew && !create {
		return resp, err
	}
	status := 0
	if err == nil {
		status = resp.StatusCode
	}
	if create && status == 200 {
		body, rerr := io.ReadAll(resp.Body)
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(body))
		var out struct{ ID string }
		if rerr == nil && json.Unmarshal(body, &out) == nil && out.ID != "" {
			s.mu.Lock()
			s.created = append(s.created, out.ID)
			s.creates = append(s.creates, renewRecord{Sent: sent, Done: now(), Status: status})
			s.mu.Unlock()
		}
	}
	if renew {
		s.mu.Lock()
		s.renews = append(s.renews, renewRecord{Sent: sent, Done: now(), Status: status})
		s.mu.Unlock()
	}
	return resp, err
}

// session is the last session the client created: the one its lock uses.
func (s *sessionTap) session() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.created) == 0 {
		return ""
	}
	return s.created[len(s.created)-1]
}

func (s *sessionTap) renewLog() []renewRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]renewRecord(nil), s.renews...)
}

// leaseLog is renewLog with the creates: every time a lease started.
func (s *sessionTap) leaseLog() []renewRecord {
	s.mu.Lock()
	defer s.mu.Unlock()
	all := append(append([]renewRecord(nil), s.creates...), s.renews...)
	sort.Slice(all, func(i, j int) bool { return all[i].Sent.Before(all[j].Sent) })
	return all
}

// heldLock is a lock a Go holder got, whatever the kind.
type heldLock interface {
	lost() <-chan struct{}
	tenure() tenure
	release(ctx context.Context) error
}

type lockHeld struct{ l *rkclient.Lock }

func (h lockHeld) lost() <-chan struct{}             { return h.l.Lost() }
func (h lockHeld) tenure() tenure                    { return tenure{Session: h.l.Session(), Index: h.l.Index()} }
func (h lockHeld) release(ctx context.Context) error { return h.l.Unlock(ctx) }

type electionHeld struct {
	e       *rkclient.Election
	session string
}

func (h electionHeld) lost() <-chan struct{}             { return h.e.Lost() }
func (h electionHeld) tenure() tenure                    { return tenure{Session: h.session, Index: h.e.Term()} }
func (h electionHeld) release(ctx context.Context) error { return h.e.Resign(ctx) }

type semaphoreHeld struct {
	s       *rkclient.Semaphore
	session string
}

func (h semaphoreHeld) lost() <-chan struct{}             { return h.s.Lost() }
func (h semaphoreHeld) tenure() tenure                    { return tenure{Session: h.session} }
func (h semaphoreHeld) release(ctx context.Context) error { return h.s.Release(ctx) }

// goHolder is a holder or contender using the Go client.
type goHolder struct {
	spec keySpec
	name string // "holder via n2"
	cl   *rkclient.Client
	tap  *sessionTap
	ttl  time.Duration

	mu   sync.Mutex
	held *tenure // set once it holds
}

func (h *goHolder) acquired() (tenure, bool) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.held == nil {
		return tenure{}, false
	}
	return *h.held, true
}

// run takes the lock (trying again after errors until ctx ends), then
// records the holding: until Lost closes (told), or until ctx ends (then
// it unlocks).
func (h *goHolder) run(ctx context.Context, hist *viewHistory, logf func(string, ...any)) {
	var held heldLock
	for held == nil {
		var err error
		if held, err = h.acquire(ctx); err != nil {
			if ctx.Err() != nil {
				return
			}
			logf("%s %s: %v (trying again)", h.spec.name, h.name, err)
			select { // a client's pause before trying again
			case <-ctx.Done():
				return
			case <-time.After(time.Second):
			}
		}
	}
	start, t := now(), held.tenure()
	h.mu.Lock()
	h.held = &t
	h.mu.Unlock()
	x := holding{Key: h.spec.name, Holder: h.name, Start: start, Tenure: t}
	select {
	case <-held.lost():
		x.End, x.Told, x.How = now(), true, "told"
	case <-ctx.Done():
		x.End, x.How = now(), "unlocked"
	}
	hist.addHolding(x)
	// Cut off, the release fails (the cluster expires the session); it is
	// still what an application does.
	rctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := held.release(rctx); err != nil && !x.Told {
		logf("%s %s: release: %v", h.spec.name, h.name, err)
	}
}

func (h *goHolder) acquire(ctx context.Context) (heldLock, error) {
	opts := rkclient.LockOptions{TTL: h.ttl, LockDelay: h.spec.lockDelay}
	switch h.spec.kind {
	case kindLock:
		l, err := h.cl.Lock(ctx, h.spec.lockKey(), opts)
		if err != nil {
			return nil, err
		}
		return lockHeld{l}, nil
	case kindElection:
		e := h.cl.Election(h.spec.lockKey())
		if err := e.Campaign(ctx, []byte(h.name), opts); err != nil {
			return nil, err
		}
		return electionHeld{e: e, session: h.tap.session()}, nil
	case kindSemaphore:
		s, err := h.cl.Semaphore(ctx, h.spec.prefix(), 1, opts)
		if err != nil {
			return nil, err
		}
		return semaphoreHeld{s: s, session: h.tap.session()}, nil
	case kindOwnSession:
		return acquireOwnSession(ctx, h.cl, h.spec, h.ttl)
	}
	return nil, fmt.Errorf("kind %s is not a Go client's", h.spec.kind)
}

// ownHeld is a lock held with a session the test made without node
// checks (only its TTL ends it), given to Lock as LockOptions.Session: the
// lock renews it and counts its lease, but leaves it to its maker to end.
type ownHeld struct {
	l  *rkclient.Lock
	cl *rkclient.Client
}

func acquireOwnSession(ctx context.Context, cl *rkclient.Client, s keySpec, ttl time.Duration) (heldLock, error) {
	id, err := cl.CreateSession(ctx, rkclient.SessionOptions{Name: "lockview " + s.name, TTL: ttl, LockDelay: s.lockDelay, NoChecks: true})
	if err != nil {
		return nil, err
	}
	l, err := cl.Lock(ctx, s.lockKey(), rkclient.LockOptions{Session: id})
	if err != nil {
		dctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = cl.DestroySession(dctx, id)
		return nil, err
	}
	return ownHeld{l: l, cl: cl}, nil
}

func (h ownHeld) lost() <-chan struct{} { return h.l.Lost() }
func (h ownHeld) tenure() tenure        { return tenure{Session: h.l.Session(), Index: h.l.Index()} }

func (h ownHeld) release(ctx context.Context) error {
	err := h.l.Unlock(ctx)
	if derr := h.cl.DestroySession(ctx, h.l.Session()); err == nil {
		err = derr
	}
	return err
}

// cliScript is the command raftkv lock runs: it appends its own start time,
// lock index and pid to the file $1, and from a trap on TERM its end time,
// then exits. The sleep runs in the background so that the trap runs at
// once.
const cliScript = `f=$1
echo "start $(date +%s.%N) $RAFTKV_LOCK_INDEX $$" >> "$f"
s=
stop() { [ -n "$s" ] && kill "$s" 2>/dev/null; echo "end $(date +%s.%N)" >> "$f"; exit 0; }
trap stop TERM INT
while :; do sleep 1 & s=$!; wait "$s"; done`

// cliHolder is a raftkv lock process (a holder or contender).
type cliHolder struct {
	spec   keySpec
	name   string
	file   string // what its command records
	log    string // raftkv's and the command's output
	cmd    *exec.Cmd
	exited chan struct{}
	exitAt time.Time // set before exited closes
	termAt time.Time // when the test sent SIGTERM to raftkv (zero: never)
}

func startCLI(bin, dir string, s keySpec, name, endpoints string, ttl time.Duration) (*cliHolder, error) {
	base := strings.NewReplacer(" ", "-", ",", "-").Replace(s.name + "-" + name)
	h := &cliHolder{spec: s, name: name, file: dir + "/" + base + ".times", log: dir + "/" + base + ".log", exited: make(chan struct{})}
	out, err := os.Create(h.log)
	if err != nil {
		return nil, err
	}
	// --timeout bounds each call of raftkv's, not the wait for the lock:
	// the release of a holder cut off gives up after it.
	h.cmd = exec.Command(bin, "--endpoints", endpoints, "--timeout", "10s",
		"lock", "--ttl", ttl.String(), s.prefix(), "--", "sh", "-c", cliScript, "lockview", h.file)
	h.cmd.Stdout, h.cmd.Stderr = out, out
	// Its own process group: if raftkv must be killed, so is its command.
	h.cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
	if err := h.cmd.Start(); err != nil {
		out.Close()
		return nil, err
	}
	go func() {
		_ = h.cmd.Wait()
		out.Close()
		h.exitAt = now()
		close(h.exited)
	}()
	return h, nil
}

// acquired reports the lock index once the command has started.
func (h *cliHolder) acquired() (tenure, bool) {
	r, err := readCLITimes(h.file)
	if err != nil || r.start.IsZero() {
		return tenure{}, false
	}
	return tenure{Index: r.index}, true
}

// stop ends raftkv (SIGTERM: it stops its command and releases), and kills
// it and its command, and their process groups, if it has not exited
// within 20s.
func (h *cliHolder) stop() {
	select {
	case <-h.exited:
		return
	default:
	}
	h.termAt = now()
	_ = h.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-h.exited:
	case <-time.After(20 * time.Second):
		if r, _ := readCLITimes(h.file); r.pid > 0 && r.end.IsZero() {
			_ = syscall.Kill(-r.pid, syscall.SIGKILL) // its own group, if raftkv made one
			_ = syscall.Kill(r.pid, syscall.SIGKILL)
		}
		_ = syscall.Kill(-h.cmd.Process.Pid, syscall.SIGKILL)
		<-h.exited
	}
}

// holding is the command's running time, as it recorded it. Without an
// end (it was killed, so the trap never ran) it ends when raftkv exited,
// which waits for it: later than the truth, never earlier.
func (h *cliHolder) holding() (holding, bool, error) {
	r, err := readCLITimes(h.file)
	if err != nil || r.start.IsZero() {
		return holding{}, false, err
	}
	x := holding{Key: h.spec.name, Holder: h.name, Start: r.start, End: r.end, Tenure: tenure{Index: r.index}, How: "stopped"}
	if x.End.IsZero() {
		x.End, x.How = h.exitAt, "no end recorded; raftkv exited"
	}
	// Stopped before the test asked for it: raftkv saw the lock lost.
	x.Told = h.termAt.IsZero() || x.End.Before(h.termAt)
	if !x.Told {
		x.How = "ended"
	}
	return x, true, nil
}

type cliTimes struct {
	start, end time.Time
	index      uint64
	pid        int // the command's
}

func readCLITimes(file string) (cliTimes, error) {
	var r cliTimes
	b, err := os.ReadFile(file)
	if errors.Is(err, os.ErrNotExist) {
		return r, nil
	}
	if err != nil {
		return r, err
	}
	for _, line := range strings.Split(strings.TrimSpace(string(b)), "\n") {
		f := strings.Fields(line)
		if len(f) < 2 {
			continue
		}
		at, err := parseEpoch(f[1])
		if err != nil {
			return r, fmt.Errorf("%s: %q: %w", file, line, err)
		}
		switch {
		case f[0] == "start" && len(f) == 4:
			if r.index, err = strconv.ParseUint(f[2], 10, 64); err != nil {
				return r, fmt.Errorf("%s: %q: %w", file, line, err)
			}
			if r.pid, err = strconv.Atoi(f[3]); err != nil {
				return r, fmt.Errorf("%s: %q: %w", file, line, err)
			}
			r.start = at
		case f[0] == "end":
			r.end = at
		}
	}
	return r, nil
}

// parseEpoch reads date +%s.%N.
func parseEpoch(s string) (time.Time, error) {
	sec, frac, ok := strings.Cut(s, ".")
	if !ok || len(frac) != 9 {
		return time.Time{}, fmt.Errorf("not seconds.nanoseconds: %q", s)
	}
	secs, err := strconv.ParseInt(sec, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	ns, err := strconv.ParseInt(frac, 10, 64)
	if err != nil {
		return time.Time{}, err
	}
	return time.Unix(secs, ns), nil
}
