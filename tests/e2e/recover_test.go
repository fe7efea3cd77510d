package e2e

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
)

// Quorum loss for good: two of three nodes are gone. The survivor is given
// a peers.json naming only itself and restarted with -recover: it leads a
// one-node cluster with every write that was acknowledged, then grows back
// to three.
func TestRecoverFromQuorumLoss(t *testing.T) {
	c := startCluster(t, 3)
	cl := raftkvClient(t, c)
	ctx := context.Background()
	const n = 200
	for i := range n {
		if err := cl.Put(ctx, fmt.Sprintf("acked/%03d", i), []byte(fmt.Sprint(i))); err != nil {
			t.Fatal(err)
		}
	}
	lost := time.Now()
	c.Kill(1)
	c.Kill(2)
	if err := c.Stop(0); err != nil {
		t.Fatalf("stop the survivor: %v", err)
	}
	survivor := c.Procs[0]
	peers := fmt.Sprintf(`[{"id":%q,"address":%q,"non_voter":false}]`, survivor.ID, survivor.Addr)
	if err := os.WriteFile(filepath.Join(survivor.Dir, "peers.json"), []byte(peers), 0o644); err != nil {
		t.Fatal(err)
	}
	survivor.Args = append(survivor.Args, "-recover")
	c.StartProc(0)
	if l := c.WaitLeader(30 * time.Second); l != 0 {
		t.Fatalf("leader after recovery: node %d", l)
	}
	recovered := time.Since(lost)
	if _, err := os.Stat(filepath.Join(survivor.Dir, "peers.json.applied")); err != nil {
		t.Fatalf("peers.json not marked applied: %v", err)
	}
	one := cli{t: t, endpoints: survivor.Addr}
	lines := strings.Split(strings.TrimSpace(one.ok("", "ls", "acked/")), "\n")
	if len(lines) != n {
		t.Fatalf("after recovery, %d keys under acked/, want %d", len(lines), n)
	}
	for i, line := range lines {
		if f := strings.Fields(line); len(f) != 2 || f[0] != fmt.Sprintf("acked/%03d", i) || f[1] != fmt.Sprint(i) {
			t.Fatalf("after recovery, line %d: %q", i, line)
		}
	}
	one.ok("", "put", "after/recovery", "yes")
	growing := time.Now()

	// Grow back to three with fresh nodes.
	for range 2 {
		p := c.AddBare()
		one.ok("", "join", p.ID, p.Addr)
	}
	testsupport.WaitFor(t, 60*time.Second, "three voters again", func() error {
		resp, err := http.Get("http://" + survivor.Addr + "/v1/operator/raft/configuration")
		if err != nil {
			return err
		}
		defer resp.Body.Close()
		var cfg struct{ Servers []struct{ Voter bool } }
		if err := json.NewDecoder(resp.Body).Decode(&cfg); err != nil {
			return err
		}
		voters := 0
		for _, s := range cfg.Servers {
			if s.Voter {
				voters++
			}
		}
		if voters != 3 {
			return fmt.Errorf("%d voters", voters)
		}
		return nil
	})
	grown := time.Since(growing)
	all := cli{t: t, endpoints: c.Procs[3].Addr + "," + c.Procs[4].Addr}
	if out := all.ok("", "get", "acked/199"); out != "199\n" {
		t.Fatalf("a new member reads %q", out)
	}
	t.Logf("quorum lost → recovered one-node cluster leading: %s; two fresh nodes joined → three voters: %s", recovered.Round(10*time.Millisecond), grown.Round(10*time.Millisecond))
}
