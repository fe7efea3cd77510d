// Command example runs a 5-node raftkv cluster in one process on loopback
// and shows it working: writes through a follower, linearizable reads on
// every node, compare-and-set, delete, and a leader failure with the old
// leader rejoining. Then it keeps serving and prints curl lines to try,
// until Ctrl-C. With -demo it exits after the demonstration.
//
//	go run ./example            # ports 7001-7005
//	go run ./example -port 9001 # ports 9001-9005
//	go run ./example -demo      # demonstrate and exit
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"path/filepath"
	"strconv"
	"syscall"
	"time"

	"github.com/raftkv/raftkv/raftstore"
	"github.com/raftkv/raftkv/tlscerts"
)

func main() {
	port := flag.Int("port", 7001, "port of the first node; the others use the next four (0: any free ports)")
	demo := flag.Bool("demo", false, "run the demonstration and exit")
	verbose := flag.Bool("v", false, "show the nodes' logs (warnings and errors)")
	useTLS := flag.Bool("tls", false, "run the nodes over mutual TLS (a CA and certificates made for the run)")
	flag.Parse()
	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGINT, syscall.SIGTERM)
	defer stop()
	logs := io.Discard
	if *verbose {
		logs = os.Stderr
	}
	if err := run(ctx, os.Stdout, logs, *port, *demo, *useTLS); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

const nodes = 5

type cluster struct {
	out    io.Writer
	logger *slog.Logger
	root   string
	addrs  [nodes]string
	stores [nodes]*raftstore.RaftStore
	tls    [nodes]raftstore.TLSFiles // with -tls
	ca     string                    // with -tls: the CA's file, for curl
}

func (c *cluster) config(i int) raftstore.Config {
	cfg := raftstore.Config{
		ID:             fmt.Sprintf("n%d", i+1),
		Addr:           c.addrs[i],
		DataDir:        fmt.Sprintf("%s/n%d", c.root, i+1),
		Bootstrap:      i == 0,
		SmallFootprint: true,
		Logger:         c.logger,
		// Joined nodes vote once autopilot has seen them healthy for a second
		// (10s by default, meant for real deployments).
		ServerStabilizationTime: time.Second,
	}
	if i > 0 {
		cfg.Join = []string{c.addrs[0]}
	}
	cfg.TLS = c.tls[i]
	return cfg
}

func (c *cluster) start(i int) error {
	s, err := raftstore.Open(c.config(i))
	if err != nil {
		return fmt.Errorf("start n%d: %w", i+1, err)
	}
	c.stores[i] = s
	c.addrs[i] = s.Addr()
	return nil
}

func (c *cluster) closeAll() {
	for i, s := range c.stores {
		if s != nil {
			_ = s.Close()
			c.stores[i] = nil
		}
	}
}

func (c *cluster) leader() int {
	for i, s := range c.stores {
		if s == nil {
			continue
		}
		if addr, _ := s.Leader(); addr == s.Addr() {
			return i
		}
	}
	return -1
}

// waitFor polls cond until it holds or ctx ends.
func waitFor(ctx context.Context, what string, cond func() bool) error {
	t := time.NewTicker(25 * time.Millisecond)
	defer t.Stop()
	for !cond() {
		select {
		case <-ctx.Done():
			return fmt.Errorf("waiting for %s: %w", what, ctx.Err())
		case <-t.C:
		}
	}
	return nil
}

func run(ctx context.Context, out, logs io.Writer, port int, demo, useTLS bool) error {
	root, err := os.MkdirTemp("", "raftkv-example-")
	if err != nil {
		return err
	}
	defer os.RemoveAll(root)
	c := &cluster{out: out, root: root, logger: slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelWarn}))}
	defer c.closeAll()
	for i := range nodes {
		c.addrs[i] = "127.0.0.1:0"
		if port != 0 {
			c.addrs[i] = "127.0.0.1:" + strconv.Itoa(port+i)
		}
	}

	if useTLS {
		if err := c.makeCertificates(); err != nil {
			return err
		}
	}
	fmt.Fprintf(out, "raftkv example: %d nodes, data in %s\n", nodes, root)
	for i := range nodes {
		if err := c.start(i); err != nil {
			return err
		}
	}
	wctx, cancel := context.WithTimeout(ctx, 60*time.Second)
	defer cancel()
	err = waitFor(wctx, "all nodes ready voters", func() bool {
		for _, s := range c.stores {
			conf, err := s.Configuration(wctx)
			if err != nil || len(conf.Servers) != nodes || !s.Ready() {
				return false
			}
			for _, n := range conf.Servers {
				if !n.Voter {
					return false
				}
			}
		}
		return true
	})
	if err != nil {
		return err
	}
	scheme, curl := "http", "curl"
	if useTLS {
		scheme, curl = "https", "curl --cacert "+c.ca
		fmt.Fprintf(out, "  over mutual TLS between the nodes; CA %s\n", c.ca)
	}
	for i, s := range c.stores {
		fmt.Fprintf(out, "  n%d  %s://%s\n", i+1, scheme, s.Addr())
	}
	if err := c.demonstrate(wctx); err != nil {
		return err
	}
	if demo {
		fmt.Fprintln(out, "demo complete")
		return nil
	}
	a := c.addrs[(c.leader()+1)%nodes]
	fmt.Fprintf(out, `
The cluster keeps running; every node answers every request. Open the web
UI in a browser at %[4]s://%[1]s/ui/ (any node), or try:

  %[3]s -X PUT %[4]s://%[1]s/v1/kv/hello -d world
  %[3]s '%[4]s://%[2]s/v1/kv/hello?raw'
  %[3]s '%[4]s://%[2]s/v1/kv/?recurse'
  %[3]s '%[4]s://%[1]s/v1/kv/?keys&separator=/'
  %[3]s -X DELETE %[4]s://%[1]s/v1/kv/hello
  %[3]s %[4]s://%[1]s/v1/status/leader
  %[3]s %[4]s://%[1]s/v1/operator/raft/configuration
  %[3]s -X POST %[4]s://%[1]s/v1/operator/raft/transfer-leader
  %[3]s %[4]s://%[1]s/metrics

Ctrl-C to stop.
`, a, c.addrs[(c.leader()+2)%nodes], curl, scheme)
	<-ctx.Done()
	fmt.Fprintln(out, "stopping")
	return nil
}

func (c *cluster) demonstrate(ctx context.Context) error {
	out := c.out
	l := c.leader()
	if l < 0 {
		return errors.New("no leader")
	}
	f1, f2 := (l+1)%nodes, (l+2)%nodes
	fmt.Fprintf(out, "\nleader is n%d\n", l+1)

	idx, err := c.stores[f1].Set(ctx, "greeting", []byte("hello, raft"))
	if err != nil {
		return fmt.Errorf("set via follower: %w", err)
	}
	fmt.Fprintf(out, "1. Set greeting=%q on follower n%d (forwarded to the leader), index %d\n", "hello, raft", f1+1, idx)

	fmt.Fprintln(out, "2. Linearizable Get from every node:")
	for i, s := range c.stores {
		e, err := s.Get(ctx, "greeting")
		if err != nil {
			return fmt.Errorf("get on n%d: %w", i+1, err)
		}
		fmt.Fprintf(out, "     n%d: %q (ModifyIndex %d)\n", i+1, e.Value, e.ModifyIndex)
	}

	newIdx, err := c.stores[f2].CompareAndSet(ctx, "greeting", []byte("hello again"), idx)
	if err != nil {
		return fmt.Errorf("cas that should win: %w", err)
	}
	fmt.Fprintf(out, "3. CompareAndSet with index %d on n%d: won, new index %d\n", idx, f2+1, newIdx)
	_, err = c.stores[f1].CompareAndSet(ctx, "greeting", []byte("lost update"), idx)
	if !errors.Is(err, raftstore.ErrCASMismatch) {
		return fmt.Errorf("cas that should lose returned %v", err)
	}
	fmt.Fprintf(out, "   CompareAndSet with the old index %d on n%d: lost (%v)\n", idx, f1+1, err)

	if _, err := c.stores[f1].Set(ctx, "temp", []byte("short-lived")); err != nil {
		return err
	}
	if err := c.stores[f2].Delete(ctx, "temp"); err != nil {
		return fmt.Errorf("delete: %w", err)
	}
	if _, err := c.stores[l].Get(ctx, "temp"); !errors.Is(err, raftstore.ErrNotFound) {
		return fmt.Errorf("deleted key still readable: %v", err)
	}
	fmt.Fprintln(out, "4. Set temp, Delete it via another follower: gone on the leader too")

	fmt.Fprintf(out, "5. Killing the leader n%d ...\n", l+1)
	start := time.Now()
	if err := c.stores[l].Kill(); err != nil { // no hand-over: the others must notice and elect
		return fmt.Errorf("kill leader: %w", err)
	}
	c.stores[l] = nil
	if err := waitFor(ctx, "a new leader", func() bool { return c.leader() >= 0 }); err != nil {
		return err
	}
	nl := c.leader()
	fmt.Fprintf(out, "   new leader n%d after %s\n", nl+1, time.Since(start).Round(time.Millisecond))
	e, err := c.stores[f1].Get(ctx, "greeting")
	if err != nil || string(e.Value) != "hello again" {
		return fmt.Errorf("data after failover: %q, %v", e.Value, err)
	}
	if _, err := c.stores[f2].Set(ctx, "after-failover", []byte("yes")); err != nil {
		return fmt.Errorf("write after failover: %w", err)
	}
	fmt.Fprintf(out, "   data intact (greeting=%q), writes succeed\n", e.Value)

	if err := c.start(l); err != nil {
		return err
	}
	err = waitFor(ctx, "old leader catching up", func() bool {
		e, err := c.stores[l].Get(ctx, "after-failover", raftstore.Stale())
		return err == nil && string(e.Value) == "yes"
	})
	if err != nil {
		return err
	}
	fmt.Fprintf(out, "6. Old leader n%d restarted on its data dir, rejoined and caught up\n", l+1)
	return nil
}

// makeCertificates writes a CA and a certificate for each node (host
// 127.0.0.1) under the data root.
func (c *cluster) makeCertificates() error {
	dir := filepath.Join(c.root, "tls")
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return err
	}
	ca, err := tlscerts.CreateCA("raftkv example CA", 24*time.Hour)
	if err != nil {
		return err
	}
	c.ca = filepath.Join(dir, "ca.pem")
	if err := os.WriteFile(c.ca, ca.Cert, 0o644); err != nil {
		return err
	}
	for i := range nodes {
		name := fmt.Sprintf("n%d", i+1)
		p, err := tlscerts.CreateCert(ca, tlscerts.CertOptions{Name: name, Hosts: []string{"127.0.0.1"}, Validity: 24 * time.Hour})
		if err != nil {
			return err
		}
		c.tls[i] = raftstore.TLSFiles{CA: c.ca, Cert: filepath.Join(dir, name+".pem"), Key: filepath.Join(dir, name+"-key.pem")}
		if err := p.WriteFiles(c.tls[i].Cert, c.tls[i].Key); err != nil {
			return err
		}
	}
	return nil
}
