package e2e

import (
	"net"
	"strings"
	"testing"
	"time"
)

// Joins through the CLI add non-voters: three joins of addresses where
// nothing listens leave the cluster its leader, and writes work with a
// real voter down. A removed node exits 0 and says why.
func TestBogusJoinsAndRemoval(t *testing.T) {
	c := startCluster(t, 3)
	leader, followers := leaderAndFollowers(c)
	k := cli{t: t, endpoints: leader.Addr + "," + followers[0].Addr + "," + followers[1].Addr}
	for _, id := range []string{"bogus1", "bogus2", "bogus3"} {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		addr := ln.Addr().String()
		ln.Close()
		k.ok("", "join", id, addr)
	}
	members := k.ok("", "members")
	if strings.Count(members, "bogus") != 3 || !strings.Contains(members, "failure tolerance: 1") {
		t.Fatalf("members after bogus joins:\n%s", members)
	}
	for _, line := range strings.Split(members, "\n") {
		if f := strings.Fields(line); len(f) == 7 && strings.HasPrefix(f[0], "bogus") && (f[3] != "false" || f[4] != "false") {
			t.Fatalf("a bogus member is a voter or healthy: %s", line)
		}
	}
	for i, p := range c.Procs {
		if p.ID == followers[1].ID {
			c.Kill(i)
		}
	}
	k = cli{t: t, endpoints: leader.Addr + "," + followers[0].Addr}
	k.ok("", "put", "after/bogus", "still-writable")
	if out := k.ok("", "get", "after/bogus"); out != "still-writable\n" {
		t.Fatalf("get: %q", out)
	}
	for _, id := range []string{"bogus1", "bogus2", "bogus3", followers[1].ID} {
		k.ok("", "remove", id)
	}

	// Removing a running node: it notices, logs why and exits 0.
	for i, p := range c.Procs {
		if p.ID != followers[0].ID {
			continue
		}
		k.ok("", "remove", p.ID)
		if err := c.WaitExit(i, 30*time.Second); err != nil {
			t.Fatalf("removed node: %v\n%s", err, p.Log.String())
		}
		if !strings.Contains(p.Log.String(), "removed from the cluster") {
			t.Fatalf("the removed node did not say why it stopped:\n%s", p.Log.String())
		}
	}
}
