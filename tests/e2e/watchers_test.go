package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	consul "github.com/hashicorp/consul/api"

	"github.com/raftkv/raftkv/internal/testsupport"
)

// usage reads a process's resident memory and CPU time from /proc.
func usage(t *testing.T, pid int) (rssMB float64, cpu time.Duration) {
	t.Helper()
	status, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", pid))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(status), "\n") {
		if f := strings.Fields(line); len(f) >= 2 && f[0] == "VmRSS:" {
			kb, _ := strconv.ParseFloat(f[1], 64)
			rssMB = kb / 1024
		}
	}
	stat, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	if err != nil {
		t.Fatal(err)
	}
	f := strings.Fields(string(stat)[strings.LastIndexByte(string(stat), ')')+2:])
	ut, _ := strconv.ParseInt(f[11], 10, 64)                   // utime, field 14
	st, _ := strconv.ParseInt(f[12], 10, 64)                   // stime, field 15
	return rssMB, time.Duration(ut+st) * 10 * time.Millisecond // USER_HZ = 100
}

// TestThousandWatchers holds 1,000 blocking queries on different keys of
// one node while writes run, checks every watcher sees the change to its
// key, and logs what the watchers cost that node (memory, CPU) against the
// same write load without them.
func TestThousandWatchers(t *testing.T) {
	const watchers = 1000
	c := startCluster(t, 3)
	_, followers := leaderAndFollowers(c)
	target := followers[0] // serves the watchers
	writerKV := client(t, followers[1].Addr).KV()
	pid := target.Cmd.Process.Pid

	writes := func(d time.Duration, keys func(i int) string) int {
		deadline := time.Now().Add(d)
		n := 0
		for ; time.Now().Before(deadline); n++ {
			if _, err := writerKV.Put(&consul.KVPair{Key: keys(n), Value: []byte(strconv.Itoa(n))}, nil); err != nil {
				t.Fatal(err)
			}
		}
		return n
	}
	// Baseline: the same write load, no watchers.
	rss0, cpu0 := usage(t, pid)
	n0 := writes(3*time.Second, func(i int) string { return fmt.Sprintf("w/%d", rand.IntN(watchers)) })
	rss1, cpu1 := usage(t, pid)

	// 1,000 watchers, one per key, each re-blocking after every wake-up.
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: watchers, MaxConnsPerHost: watchers}}
	wc, err := consul.NewClient(&consul.Config{Address: target.Addr, HttpClient: hc})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var blocked, wakeups atomic.Int64
	seen := make([]atomic.Uint64, watchers) // newest ModifyIndex each watcher saw
	for i := range watchers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			key := fmt.Sprintf("w/%d", i)
			var index uint64
			for ctx.Err() == nil {
				q := (&consul.QueryOptions{WaitIndex: index, WaitTime: time.Minute}).WithContext(ctx)
				if index > 0 && index == seen[i].Load() {
					blocked.Add(1)
				}
				pair, meta, err := wc.KV().Get(key, q)
				if index > 0 && index == seen[i].Load() {
					blocked.Add(-1)
				}
				if err != nil {
					if ctx.Err() == nil {
						t.Errorf("watcher %d: %v", i, err)
					}
					return
				}
				if pair != nil {
					seen[i].Store(pair.ModifyIndex)
				}
				if index > 0 {
					wakeups.Add(1)
				}
				index = meta.LastIndex
				seen[i].Store(index)
			}
		}()
	}
	testsupport.WaitFor(t, 60*time.Second, "1,000 watchers blocked", func() error {
		if n := blocked.Load(); n < watchers {
			return fmt.Errorf("%d blocked", n)
		}
		return nil
	})
	rss2, cpu2 := usage(t, pid)
	n1 := writes(3*time.Second, func(i int) string { return fmt.Sprintf("w/%d", rand.IntN(watchers)) })
	rss3, cpu3 := usage(t, pid)

	// Every watcher sees a final write to its own key.
	final := map[int]uint64{}
	for i := range watchers {
		meta, err := writerKV.Put(&consul.KVPair{Key: fmt.Sprintf("w/%d", i), Value: []byte("final")}, nil)
		if err != nil {
			t.Fatal(err)
		}
		_ = meta
		pair, _, err := writerKV.Get(fmt.Sprintf("w/%d", i), nil)
		if err != nil || pair == nil {
			t.Fatal(err)
		}
		final[i] = pair.ModifyIndex
	}
	testsupport.WaitFor(t, 60*time.Second, "every watcher to see its key's last write", func() error {
		for i, idx := range final {
			if seen[i].Load() < idx {
				return fmt.Errorf("watcher %d at %d, last write %d", i, seen[i].Load(), idx)
			}
		}
		return nil
	})
	cancel()
	wg.Wait()

	perWrite := func(cpu time.Duration, n int) time.Duration { return cpu / time.Duration(max(n, 1)) }
	t.Logf("1,000 watchers on node %s: RSS %.1f MB idle → %.1f MB with the watchers blocked (+%.1f MB, %.1f KB per watcher)",
		target.ID, rss1, rss2, rss2-rss1, (rss2-rss1)*1024/watchers)
	t.Logf("CPU per write on the watchers' node: %s without watchers (%d writes), %s with 1,000 watchers (%d writes, %d wake-ups); ratio %.2f",
		perWrite(cpu1-cpu0, n0), n0, perWrite(cpu3-cpu2, n1), n1, wakeups.Load(),
		float64(perWrite(cpu3-cpu2, n1))/float64(max(perWrite(cpu1-cpu0, n0), 1)))
	t.Logf("RSS during the watched write load: %.1f MB (baseline load %.1f MB, start %.1f MB)", rss3, rss1, rss0)
	_ = syscall.Getpid
}
