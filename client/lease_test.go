package client

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/wire"
	"github.com/raftkv/raftkv/kv"
)

// leaseServer plays a cluster for one lock: it grants the lock, renews one
// session (whose TTL and checks it is given) until told to refuse, and
// records when each renew that succeeded arrived: the earliest moment from
// which the real cluster could count the session's Lease.
type leaseServer struct {
	session wire.SessionEntry
	mu      sync.Mutex
	refuse  bool
	renewed []time.Time
}

func (s *leaseServer) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	arrived := time.Now()
	switch {
	case strings.HasPrefix(r.URL.Path, "/v1/session/renew/"):
		s.mu.Lock()
		defer s.mu.Unlock()
		if s.refuse || strings.TrimPrefix(r.URL.Path, "/v1/session/renew/") != s.session.ID {
			http.Error(w, "No cluster leader", http.StatusServiceUnavailable)
			return
		}
		s.renewed = append(s.renewed, arrived)
		json.NewEncoder(w).Encode([]wire.SessionEntry{s.session})
	case r.URL.Path == "/v1/txn":
		w.Write([]byte(`{"Results":[{"KV":{"Key":"k","LockIndex":1,"Session":"` + s.session.ID + `"}}],"Errors":null}`))
	case r.URL.Path == "/v1/kv/k":
		if r.URL.Query().Get("index") != "" {
			<-r.Context().Done() // a blocking query that sees no change
			return
		}
		w.Header().Set("X-Consul-Index", "1")
		w.Write([]byte(`[{"Key":"k","LockIndex":1,"Session":"` + s.session.ID + `"}]`))
	default:
		http.NotFound(w, r)
	}
}

func (s *leaseServer) lastRenew() time.Time {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.renewed[len(s.renewed)-1]
}

// A holder that can no longer renew is told it lost its lock before the
// cluster may invalidate its session: before its Lease has passed since
// its last renew reached the cluster, whatever the session's checks.
func TestLockLostBeforeItsLeaseRunsOut(t *testing.T) {
	for _, sess := range []wire.SessionEntry{
		{ID: "ttl", TTL: "2s", NodeChecks: []string{kv.SerfHealth}},
	} {
		t.Run(sess.ID, func(t *testing.T) {
			srv := &leaseServer{session: sess}
			hs := httptest.NewServer(srv)
			defer hs.Close()
			c := newTestClient(t, hs.URL)
			// A wider margin than the default: a loaded machine may take
			// a while to run the test's goroutine once Lost closed.
			l, err := c.Lock(context.Background(), "k", LockOptions{Session: sess.ID, Margin: 600 * time.Millisecond})
			if err != nil {
				t.Fatal(err)
			}
			defer l.Unlock(context.Background())
			s := sess.Session()
			lease := s.Lease()
			// Let it renew once on its own, then cut it off.
			testsupport.WaitFor(t, lease, "a renew", func() error {
				srv.mu.Lock()
				defer srv.mu.Unlock()
				if len(srv.renewed) < 2 {
					return errors.New("not renewed on its own yet")
				}
				return nil
			})
			srv.mu.Lock()
			srv.refuse = true
			srv.mu.Unlock()
			select {
			case <-l.Lost():
			case <-time.After(2 * lease):
				t.Fatal("never told")
			}
			told := time.Now()
			if limit := srv.lastRenew().Add(lease); !told.Before(limit) {
				t.Errorf("told %s after the cluster could invalidate the session", told.Sub(limit))
			}
			if early := srv.lastRenew().Add(lease / 2); told.Before(early) {
				t.Errorf("gave up %s after its last renew, with a lease of %s", told.Sub(srv.lastRenew()), lease)
			}
		})
	}
}

// An existing session that is gone cannot hold a lock.
func TestLockWithAnInvalidSession(t *testing.T) {
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "Session id 'gone' not found", http.StatusNotFound)
	}))
	defer hs.Close()
	_, err := newTestClient(t, hs.URL).Lock(context.Background(), "k", LockOptions{Session: "gone"})
	if !errors.Is(err, kv.ErrSession) {
		t.Fatalf("lock with a session that is gone: %v", err)
	}
}
