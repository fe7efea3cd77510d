package loadgen

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"math/rand/v2"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/raftkv/raftkv/kv"
)

func TestParseMix(t *testing.T) {
	m, err := ParseMix("write=10, read=90")
	if err != nil || m != (Mix{Read: 90, Write: 10}) {
		t.Fatalf("%+v %v", m, err)
	}
	for _, bad := range []string{"read=90", "read=50,write=60", "read=x", "delete=100", "read"} {
		if _, err := ParseMix(bad); err == nil {
			t.Fatalf("%q accepted", bad)
		}
	}
	// Draws follow the shares.
	r := rand.New(rand.NewPCG(1, 2))
	counts := map[string]int{}
	for range 100000 {
		counts[Mix{Read: 70, Write: 20, CAS: 10}.pick(r)]++
	}
	if counts["read"] < 69000 || counts["read"] > 71000 || counts["cas"] < 9500 || counts["cas"] > 10500 {
		t.Fatalf("draws %v do not follow 70/20/10", counts)
	}
}

func TestOpenLoopSlotsFollowTheRateNotTheServer(t *testing.T) {
	start := time.Unix(100, 0)
	// 250 requests/s: one every 4 ms, however long each one takes.
	for i, want := range []time.Duration{0, 4 * time.Millisecond, 8 * time.Millisecond, 4 * time.Second} {
		n := []int64{0, 1, 2, 1000}[i]
		if got := slotTime(start, 250, n).Sub(start); got != want {
			t.Fatalf("slot %d at %s, want %s", n, got, want)
		}
	}
	// Latency counts from the slot: a request sent late is charged for it.
	r := newRecorder()
	r.measureFrom = start
	r.record(start.Add(10*time.Millisecond), start.Add(60*time.Millisecond), nil)
	if got := r.total.Max(); got < 49900 || got > 50100 {
		t.Fatalf("recorded %dµs, want the 50ms from the intended send time", got)
	}
	// Warm-up is not recorded.
	r.record(start.Add(-time.Second), start.Add(-time.Millisecond), nil)
	if r.total.TotalCount() != 1 {
		t.Fatalf("warm-up recorded: %d", r.total.TotalCount())
	}
}

func TestKeyPrefixesCutTheKeySpaceAtPathBoundaries(t *testing.T) {
	// 0 and 1 keep the layout from before prefixes.
	for _, p := range []int{0, 1} {
		if k := KeyIn(7, p, 16); k != "bench/7xxxxxxxxx" || k != Key(7, 16) {
			t.Fatalf("prefixes %d: key %q", p, k)
		}
	}
	if k := KeyIn(13, 8, 16); k != "bench/5/13xxxxxx" {
		t.Fatalf("key %q", k)
	}
	if k := KeyIn(13, 12, 0); k != "bench/01/13" {
		t.Fatalf("key %q, want the prefix zero-padded", k)
	}
	// Every key lies in [bench/<p>/, bench/<p+1>/), the range that splits at
	// those keys make, and the prefixes share the keys evenly.
	for _, n := range []int{8, 12} {
		width := len(strconv.Itoa(n - 1))
		split := func(p int) string { return fmt.Sprintf("bench/%0*d/", width, p) }
		counts := make([]int, n)
		for i := range 10000 {
			k := KeyIn(i, n, 16)
			p := i % n
			if k < split(p) || (p+1 < n && k >= split(p+1)) {
				t.Fatalf("%d prefixes: key %q outside [%s, %s)", n, k, split(p), split(p+1))
			}
			counts[p]++
		}
		for p, c := range counts {
			if c < 10000/n || c > 10000/n+1 {
				t.Fatalf("%d prefixes: prefix %d has %d keys: %v", n, p, c, counts)
			}
		}
	}
}

func TestKeysAndErrorKinds(t *testing.T) {
	if k := Key(7, 16); len(k) != 16 || !strings.HasPrefix(k, "bench/7") {
		t.Fatalf("key %q", k)
	}
	for err, want := range map[error]string{
		fmt.Errorf("x: %w", kv.ErrNoLeader):       "no_leader",
		fmt.Errorf("x: %w", kv.ErrUnknownOutcome): "unknown_outcome",
		context.DeadlineExceeded:                  "timeout",
		errors.New("boom"):                        "other",
	} {
		if got := ErrorKind(err); got != want {
			t.Fatalf("%v: %q, want %q", err, got, want)
		}
	}
}

// fakeDriver answers at once; every third write fails with no leader.
type fakeDriver struct{ writes, reads, cas *atomic.Int64 }

func (f fakeDriver) Read(context.Context, string) error { f.reads.Add(1); return nil }
func (f fakeDriver) CAS(context.Context, string, []byte) error {
	f.cas.Add(1)
	return nil
}
func (f fakeDriver) Write(_ context.Context, _ string, v []byte) error {
	if len(v) != 64 {
		return errors.New("wrong value size")
	}
	if f.writes.Add(1)%3 == 0 {
		return kv.ErrNoLeader
	}
	return nil
}
func (fakeDriver) Close() error { return nil }

func TestRunCountsOpsErrorsAndReports(t *testing.T) {
	var w, r, c atomic.Int64
	var lines []string
	res, err := Run(context.Background(), Config{
		Clients: 4, Duration: 1200 * time.Millisecond, Keys: 100, KeySize: 16, ValueSize: 64,
		Mix: Mix{Read: 50, Write: 40, CAS: 10}, Progress: func(l string) { lines = append(lines, l) },
	}, func(int) (Driver, error) { return fakeDriver{&w, &r, &c}, nil })
	if err != nil {
		t.Fatal(err)
	}
	failed := res.Errors["no_leader"]
	if res.Ops == 0 || failed == 0 || res.Ops+failed > w.Load()+r.Load()+c.Load() {
		t.Fatalf("ops %d, no_leader %d, driver calls %d", res.Ops, failed, w.Load()+r.Load()+c.Load())
	}
	if len(res.Seconds) == 0 || len(lines) == 0 || !strings.Contains(lines[0], "ops/s") {
		t.Fatalf("no per-second series/progress: %v %q", res.Seconds, lines)
	}
	if res.Latency.P50 > res.Latency.P99 || res.Latency.P99 > res.Latency.Max {
		t.Fatalf("percentiles out of order: %+v", res.Latency)
	}
	// JSON carries what `-o json` promises.
	b, _ := json.Marshal(res)
	for _, field := range []string{`"OpsPerSecond"`, `"P99"`, `"P999"`, `"Errors"`, `"Seconds"`, `"Distribution"`} {
		if !bytes.Contains(b, []byte(field)) {
			t.Fatalf("JSON lacks %s: %s", field, b)
		}
	}
	var html bytes.Buffer
	if err := WriteHTML(&html, "test <run>", Named{"raftkv", res}, Named{"other", res}); err != nil {
		t.Fatal(err)
	}
	out := html.String()
	if strings.Count(out, "<svg") != 2 || !strings.Contains(out, "test &lt;run&gt;") || strings.Count(out, "<polyline") != 4 {
		t.Fatalf("report lacks its charts:\n%.500s", out)
	}
	if _, err := Run(context.Background(), Config{Clients: 0}, nil); err == nil {
		t.Fatal("bad config accepted")
	}
}

func TestSharedFlags(t *testing.T) {
	parse := func(args ...string) (Config, bool, error) {
		var f Flags
		fs := flag.NewFlagSet("t", flag.ContinueOnError)
		f.Register(fs)
		if err := fs.Parse(args); err != nil {
			return Config{}, false, err
		}
		return f.Config()
	}
	cfg, stale, err := parse("--clients", "64", "--mix", "read=90,write=10", "--consistency", "stale", "--rate", "500")
	if err != nil || cfg.Clients != 64 || cfg.Mix != (Mix{Read: 90, Write: 10}) || !stale || cfg.Rate != 500 || cfg.ValueSize != 256 {
		t.Fatalf("%+v stale=%v %v", cfg, stale, err)
	}
	cfg, _, err = parse("--key-prefixes", "8")
	if err != nil || cfg.Prefixes != 8 {
		t.Fatalf("--key-prefixes: %+v %v", cfg, err)
	}
	if _, _, err := parse("--mix", "read=10"); err == nil {
		t.Fatal("bad mix accepted")
	}
	if _, _, err := parse("--consistency", "eventual"); err == nil {
		t.Fatal("bad consistency accepted")
	}
}

// keyDriver records the keys it is asked for.
type keyDriver struct {
	mu   *sync.Mutex
	keys map[string]bool
}

func (d keyDriver) note(key string) error {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.keys[key] = true
	return nil
}
func (d keyDriver) Read(_ context.Context, key string) error            { return d.note(key) }
func (d keyDriver) Write(_ context.Context, key string, _ []byte) error { return d.note(key) }
func (d keyDriver) CAS(_ context.Context, key string, _ []byte) error   { return d.note(key) }
func (keyDriver) Close() error                                          { return nil }

func TestRunUsesThePrefixes(t *testing.T) {
	d := keyDriver{&sync.Mutex{}, map[string]bool{}}
	res, err := Run(context.Background(), Config{
		Clients: 2, Duration: 200 * time.Millisecond, Keys: 16, KeySize: 16, Prefixes: 4, Mix: Mix{Write: 100},
	}, func(int) (Driver, error) { return d, nil })
	if err != nil {
		t.Fatal(err)
	}
	if res.Config.Prefixes != 4 {
		t.Fatalf("result does not record the prefixes: %+v", res.Config)
	}
	seen := map[string]bool{}
	for k := range d.keys {
		if len(k) != 16 || !strings.HasPrefix(k, "bench/") || k[7] != '/' {
			t.Fatalf("key %q not under bench/<p>/", k)
		}
		seen[k[:8]] = true
	}
	if len(seen) != 4 {
		t.Fatalf("keys under %d prefixes, want 4: %v", len(seen), seen)
	}
	if _, err := Run(context.Background(), Config{Clients: 1, Duration: time.Second, Keys: 1, KeySize: 16, Prefixes: -1}, nil); err == nil {
		t.Fatal("negative prefixes accepted")
	}
}
