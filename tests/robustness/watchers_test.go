package robustness

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// The watcher check. A slow writer puts a new key under watchPrefix every
// watchEvery, alternating between the two sides of watchSplit (in the
// scenarios on ranges, a range boundary); a watcher pinned to each node
// runs a blocking listing of the prefix after another. A watcher must wake
// for every write: a listing that ran out its wait without a write
// acknowledged well before its answer slept through it. And its index
// never goes back.

const (
	watchPrefix = "w/"
	watchSplit  = "w/m/" // the boundary the scenarios on ranges put inside the prefix
	watchEvery  = 150 * time.Millisecond
	watchWait   = 2 * time.Second
	// watchSlack is how long a write may take to reach a watcher: a write
	// acknowledged this long before a listing's answer must be in it.
	watchSlack = 500 * time.Millisecond
)

// watchWrite is a write the slow writer saw acknowledged.
type watchWrite struct {
	key string
	at  time.Time
}

// watchAnswer is one blocking listing's round trip.
type watchAnswer struct {
	node           int
	sent, received time.Time
	asked, got     uint64 // the index sent, the index answered
	keys           []string
}

type watchLog struct {
	mu      sync.Mutex
	writes  []watchWrite
	answers []watchAnswer
}

// watchWriter puts keys under watchPrefix until ctx ends, through each
// node in turn.
func watchWriter(ctx context.Context, nodes []*node, w *watchLog) {
	t := time.NewTicker(watchEvery)
	defer t.Stop()
	for i := 0; ; i++ {
		select {
		case <-ctx.Done():
			return
		case <-t.C:
		}
		side := "a"
		if i%2 == 1 {
			side = "z" // after watchSplit
		}
		key := fmt.Sprintf("%s%s%06d", watchPrefix, side, i)
		oc, status, _, body := nodes[i%len(nodes)].call(ctx, http.MethodPut, "/v1/kv/"+key, []byte("w"))
		if oc == answered && status == http.StatusOK && strings.TrimSpace(string(body)) == "true" {
			w.mu.Lock()
			w.writes = append(w.writes, watchWrite{key: key, at: time.Now()})
			w.mu.Unlock()
		}
	}
}

// watcher runs blocking listings of watchPrefix on n until ctx ends.
func watcher(ctx context.Context, n *node, w *watchLog) {
	var index uint64
	for ctx.Err() == nil {
		sent := time.Now()
		path := fmt.Sprintf("/v1/kv/%s?keys&index=%d&wait=%s", watchPrefix, index, watchWait)
		oc, status, hdr, body := n.call(ctx, http.MethodGet, path, nil)
		if oc != answered || (status != http.StatusOK && status != http.StatusNotFound) {
			time.Sleep(100 * time.Millisecond) // the node is down or cut off: not a listing
			continue
		}
		got, err := strconv.ParseUint(hdr.Get("X-Consul-Index"), 10, 64)
		if err != nil {
			continue
		}
		var keys []string
		if status == http.StatusOK {
			if json.Unmarshal(body, &keys) != nil {
				continue
			}
		}
		w.mu.Lock()
		w.answers = append(w.answers, watchAnswer{node: n.idx, sent: sent, received: time.Now(), asked: index, got: got, keys: keys})
		w.mu.Unlock()
		index = got
	}
}

// check returns what the watchers got wrong, and how many wakes it saw.
func (w *watchLog) check() (violations []string, wakes int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, a := range w.answers {
		if a.got < a.asked {
			violations = append(violations, fmt.Sprintf("n%d: the index went back from %d to %d", a.node+1, a.asked, a.got))
		}
		if a.got != a.asked {
			wakes++
		}
		if a.asked == 0 || a.received.Sub(a.sent) < watchWait-100*time.Millisecond {
			continue // not a listing that ran out its wait
		}
		for _, wr := range w.writes {
			if wr.at.After(a.sent) && wr.at.Before(a.received.Add(-watchSlack)) && !slices.Contains(a.keys, wr.key) {
				violations = append(violations, fmt.Sprintf("n%d: a listing sent with index %d waited %v and missed %s, acknowledged %v before its answer",
					a.node+1, a.asked, a.received.Sub(a.sent).Round(time.Millisecond), wr.key, a.received.Sub(wr.at).Round(time.Millisecond)))
			}
		}
	}
	return violations, wakes
}
