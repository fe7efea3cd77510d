package e2e

import (
	"context"
	"testing"
	"time"

	vkconsul "github.com/kvtools/consul"
	"github.com/kvtools/valkeyrie/store"
	"github.com/kvtools/valkeyrie/testsuite"

	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// Traefik's KV provider goes through valkeyrie's Consul store, which makes
// sessions with 1–3 s TTLs for its locks and TTL keys: with
// -session-ttl-min 1s, valkeyrie's own test suite (the one its Consul store
// runs against a Consul agent) passes against raftkv unchanged, each of
// its three clients on a different node.
func TestValkeyrieConsulStore(t *testing.T) {
	c := proccluster.Start(t, 3, proccluster.Options{Root: "../..", Build: buildOpts(), Args: []string{"-session-ttl-min", "1s"}})
	leaderAndFollowers(c) // a leader before the suite starts
	self, err := client(t, c.Procs[1].Addr).Agent().Self()
	if err != nil || self["Config"]["SessionTTLMin"] != float64(time.Second) {
		t.Fatalf("agent/self does not report the 1s minimum: %v %v", self["Config"]["SessionTTLMin"], err)
	}
	open := func(addr string) store.Store {
		t.Helper()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		kv, err := vkconsul.New(ctx, []string{addr}, &vkconsul.Config{ConnectionTimeout: 3 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		return kv
	}
	kv, lockKV, ttlKV := open(c.Procs[0].Addr), open(c.Procs[1].Addr), open(c.Procs[2].Addr)
	t.Cleanup(func() { testsuite.RunCleanup(t, kv) })

	testsuite.RunCleanup(t, kv)
	testsuite.RunTestCommon(t, kv)
	testsuite.RunTestAtomic(t, kv)
	testsuite.RunTestWatch(t, kv)
	testsuite.RunTestLock(t, kv)
	testsuite.RunTestLockTTL(t, kv, lockKV)
	testsuite.RunTestTTL(t, kv, ttlKV)
}
