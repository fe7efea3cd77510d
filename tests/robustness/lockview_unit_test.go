package robustness

import (
	"os"
	"path/filepath"
	"testing"
	"time"
)

// The checkers of TestLockHoldersView on hand-made histories: each must
// report what it is there to catch, and only that, or a green run proves
// nothing.
func TestLockHoldersViewChecks(t *testing.T) {
	t0 := time.Unix(1_700_000_000, 0)
	at := func(s float64) time.Time { return t0.Add(time.Duration(s * float64(time.Second))) }
	a, b := tenure{Session: "aaaa", Index: 1}, tenure{Session: "bbbb", Index: 2}
	hold := func(key, who string, from, to float64, tn tenure) holding {
		return holding{Key: key, Holder: who, Start: at(from), End: at(to), Told: true, Tenure: tn}
	}
	read := func(call, ret float64, held ...tenure) observation {
		return observation{Call: at(call), Return: at(ret), Held: held}
	}

	t.Run("overlap", func(t *testing.T) {
		if got := overlaps([]holding{hold("k", "h", 0, 10, a), hold("k", "c", 12, 20, b), hold("j", "x", 5, 15, b)}); len(got) != 0 {
			t.Fatalf("a clean history: %v", got)
		}
		got := overlaps([]holding{hold("k", "h", 0, 10, a), hold("k", "c", 7.5, 20, b)})
		if len(got) != 1 || got[0].By != 2500*time.Millisecond {
			t.Fatalf("two holders for 2.5s: %v", got)
		}
	})

	t.Run("release before told", func(t *testing.T) {
		h := hold("k", "h", 0, 10, a)
		clean := map[string][]observation{"k": {
			read(-1, 0.5),      // called before h acquired: may not see it yet
			read(1, 2, a),      // h holds
			read(9.5, 10.5, b), // returned after h was told
		}}
		if got := releasesBeforeTold([]holding{h}, clean); len(got) != 0 {
			t.Fatalf("a clean history: %v", got)
		}
		early := map[string][]observation{"k": {read(1, 2, a), read(6, 7), read(8, 8.5, b)}}
		got := releasesBeforeTold([]holding{h}, early)
		if len(got) != 1 || got[0].Lead != 3*time.Second {
			t.Fatalf("free 3s before the holder was told: %v", got)
		}
	})

	t.Run("tenures of every kind", func(t *testing.T) {
		o := read(0, 1, tenure{Session: "aaaa", Index: 7})
		for _, tc := range []struct {
			t    tenure
			want bool
		}{
			{tenure{Session: "aaaa", Index: 7}, true},  // Lock, Election
			{tenure{Index: 7}, true},                   // raftkv lock: its index only
			{tenure{Session: "aaaa"}, true},            // a semaphore slot
			{tenure{Session: "aaaa", Index: 6}, false}, // an earlier tenure of the same session
			{tenure{Index: 6}, false},
			{tenure{Session: "bbbb"}, false},
			{tenure{}, false}, // unidentified: never holds
		} {
			if got := o.holds(tc.t); got != tc.want {
				t.Errorf("%v holds %v: %v, want %v", o.Held, tc.t, got, tc.want)
			}
		}
		if read(0, 1, tenure{Index: 7}).holds(tenure{Index: 7}) {
			t.Error("a key with no session is held by nobody")
		}
	})

	t.Run("gaps and liveness", func(t *testing.T) {
		hs := []holding{hold("k", "h", 0, 10, a), hold("k", "c", 13, 20, b), hold("j", "x", 0, 30, a)}
		g := longestGaps(hs)
		if g["k"].Len() != 3*time.Second || g["j"].Len() != 0 {
			t.Fatalf("gaps %v", g)
		}
		if got := unmoved(hs, []string{"k", "j"}); len(got) != 1 || got[0] != "j" {
			t.Fatalf("unmoved: %v", got)
		}
		if g := longestGaps([]holding{hold("k", "h", 0, 10, a), hold("k", "c", 8, 20, b)}); g["k"].Len() != 0 {
			t.Fatalf("overlapping holders leave no gap: %v", g)
		}
	})

	t.Run("lost while renewing", func(t *testing.T) {
		ttl, attempt := 20*time.Second, 4*time.Second
		renew := func(sent, done float64, status int) renewRecord {
			return renewRecord{Sent: at(sent), Done: at(done), Status: status}
		}
		// Renewed through another node every TTL/2 (the first try on the
		// dead node timing out), and invalidated anyway.
		renewing := []renewRecord{renew(0, 0.1, 200), renew(10, 14, 200), renew(24, 28, 404)}
		if why := lostWhileRenewing(at(28), renewing, ttl, attempt); why == "" {
			t.Error("a 404 14s after an accepted renew: not reported")
		}
		if why := lostWhileRenewing(at(20), renewing[:2], ttl, attempt); why == "" {
			t.Error("lost 10s after an accepted renew: not reported")
		}
		// Cut off: every renew failed after the last accepted one, and the
		// client gave up near TTL after it.
		cutOff := []renewRecord{renew(0, 0.1, 200), renew(10, 14, 0), renew(15, 19, 0)}
		if why := lostWhileRenewing(at(19), cutOff, ttl, attempt); why != "" {
			t.Errorf("a client that could not renew: %s", why)
		}
	})

	t.Run("raftkv lock's times", func(t *testing.T) {
		f := filepath.Join(t.TempDir(), "times")
		os.WriteFile(f, []byte("start 1700000000.250000000 42 4242\nend 1700000003.000000001\n"), 0o644)
		r, err := readCLITimes(f)
		if err != nil || r.index != 42 || r.pid != 4242 || !r.start.Equal(at(0.25)) || r.end.Sub(at(3)) != time.Nanosecond {
			t.Fatalf("%+v %v", r, err)
		}
	})
}
