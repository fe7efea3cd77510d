package main

import (
	"bufio"
	"context"
	"flag"
	"fmt"
	"io"
	"net/http"
	"strconv"
	"strings"
	"time"

	"github.com/raftkv/raftkv/loadgen"
)

// runBudget is where one client's write spends its time: closed-loop
// writes through entry (a follower, so the forward hop is in the path),
// with every node's /metrics read before and after; each phase is the
// mean over the run of what the nodes themselves measured.
//
//	kvbench budget --entry 127.0.0.1:7002 --leader 127.0.0.1:7001 --followers 127.0.0.1:7002,127.0.0.1:7003
func runBudget(args []string) error {
	fs := flag.NewFlagSet("kvbench budget", flag.ContinueOnError)
	entry := fs.String("entry", "", "the node the client writes through (a follower)")
	leader := fs.String("leader", "", "the leader")
	followers := fs.String("followers", "", "comma-separated followers")
	duration := fs.Duration("duration", 10*time.Second, "how long to write")
	valueSize := fs.Int("value-size", 256, "value size in bytes")
	if err := fs.Parse(args); err != nil {
		return err
	}
	if *entry == "" || *leader == "" || *followers == "" {
		return fmt.Errorf("--entry, --leader and --followers are required")
	}
	nodes := append([]string{*leader}, strings.Split(*followers, ",")...)
	before := map[string]samples{}
	for _, n := range nodes {
		s, err := scrape(n)
		if err != nil {
			return err
		}
		before[n] = s
	}
	mix, _ := loadgen.ParseMix("write=100")
	hc := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}}
	res, err := loadgen.Run(context.Background(), loadgen.Config{Clients: 1, Duration: *duration, Keys: 1000, KeySize: 16, ValueSize: *valueSize, Mix: mix},
		func(int) (loadgen.Driver, error) { return loadgen.NewHTTPDriver(*entry, false, hc), nil })
	if err != nil {
		return err
	}
	delta := map[string]samples{}
	for _, n := range nodes {
		s, err := scrape(n)
		if err != nil {
			return err
		}
		delta[n] = s.minus(before[n])
	}
	// ms is the mean of a histogram or summary over the run: name, with
	// labels ("{...}") to pick one series, or every series of it.
	ms := func(node, name, labels string, seconds bool) float64 {
		d := delta[node]
		sum, count := d.total(name+"_sum", labels), d.total(name+"_count", labels)
		if count == 0 {
			return 0
		}
		if seconds {
			return 1000 * sum / count
		}
		return sum / count // raft's own summaries are in milliseconds
	}
	var followerStore float64
	fl := strings.Split(*followers, ",")
	for _, f := range fl {
		followerStore += ms(f, "raftkv_raft_rpc_appendEntries_storeLogs", "", false) / float64(len(fl))
	}
	rows := []struct {
		what string
		v    float64
	}{
		{"client: write, end to end", res.Latency.Mean},
		{"entry node: HTTP handler (PUT /v1/kv)", ms(*entry, "raftkv_http_request_duration_seconds", `{code="200",method="PUT",route="kv"}`, true)},
		{"entry node: forward to the leader and back", ms(*entry, "raftkv_forward_seconds", "", true)},
		{"leader: propose → FSM result (raft.Apply)", ms(*leader, "raftkv_apply_seconds", "", true)},
		{"leader: own log store (dispatchLog)", ms(*leader, "raftkv_raft_leader_dispatchLog", "", false)},
		{"leader → follower AppendEntries round trip", ms(*leader, "raftkv_raft_replication_appendEntries_rpc", "", false)},
		{"follower: log store (storeLogs)", followerStore},
		{"leader: dispatch → commit (commitTime)", ms(*leader, "raftkv_raft_commitTime", "", false)},
		{"leader: FSM apply of a batch (Badger)", ms(*leader, "raftkv_raft_fsm_applyBatch", "", false)},
	}
	fmt.Printf("%d writes of %d bytes by one client through %s, %.0f/s\n", res.Ops, *valueSize, *entry, res.OpsPerSecond)
	fmt.Printf("%-46s %9s\n", "phase (mean per write)", "ms")
	for _, r := range rows {
		fmt.Printf("%-46s %9.3f\n", r.what, r.v)
	}
	return nil
}

// samples are one scrape: series (name and labels, as printed) → value.
type samples map[string]float64

func scrape(addr string) (samples, error) {
	resp, err := http.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil, fmt.Errorf("scrape %s: %w", addr, err)
	}
	defer resp.Body.Close()
	return parseSamples(resp.Body)
}

func parseSamples(r io.Reader) (samples, error) {
	out := samples{}
	sc := bufio.NewScanner(r)
	sc.Buffer(make([]byte, 1<<20), 1<<20)
	for sc.Scan() {
		line := sc.Text()
		if line == "" || line[0] == '#' {
			continue
		}
		i := strings.LastIndexByte(line, ' ')
		if i < 0 {
			continue
		}
		v, err := strconv.ParseFloat(line[i+1:], 64)
		if err != nil {
			continue
		}
		out[line[:i]] = v
	}
	return out, sc.Err()
}

func (s samples) minus(prev samples) samples {
	out := samples{}
	for k, v := range s {
		out[k] = v - prev[k]
	}
	return out
}

// total is the series name with labels (as printed in the exposition,
// "{a=\"b\"}"), or, without labels, the sum of every series of name (one
// per peer, say).
func (s samples) total(name, labels string) float64 {
	if labels != "" {
		return s[name+labels]
	}
	var t float64
	for k, v := range s {
		if k == name || strings.HasPrefix(k, name+"{") {
			t += v
		}
	}
	return t
}
