package netns

import (
	"fmt"
	"net"
	"os"
	"strings"
	"testing"
	"time"
)

// The test binary doubles as the programs run inside the hosts.
func TestMain(m *testing.M) {
	switch os.Getenv("NETNS_TEST_ROLE") {
	case "listen": // accept connections until killed
		ln, err := net.Listen("tcp", os.Getenv("NETNS_TEST_ADDR"))
		if err != nil {
			os.Exit(3)
		}
		for {
			c, err := ln.Accept()
			if err != nil {
				os.Exit(3)
			}
			c.Close()
		}
	case "dial": // exit 0 if the address answers within half a second
		c, err := net.DialTimeout("tcp", os.Getenv("NETNS_TEST_ADDR"), 500*time.Millisecond)
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		c.Close()
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func TestDropsAreSilentAndOneWay(t *testing.T) {
	if err := Available(); err != nil {
		t.Skipf("network namespaces unavailable here (the robustness suite falls back to failpoints): %v", err)
	}
	nw, err := New(2)
	if err != nil {
		t.Fatal(err)
	}
	defer nw.Close()
	addr1 := nw.IP(1) + ":9000"
	srv := nw.Command(1, os.Args[0])
	srv.Env = append(os.Environ(), "NETNS_TEST_ROLE=listen", "NETNS_TEST_ADDR="+addr1)
	if err := srv.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { srv.Process.Kill(); srv.Wait() }()

	dial := func() error {
		c := nw.Command(0, os.Args[0])
		c.Env = append(os.Environ(), "NETNS_TEST_ROLE=dial", "NETNS_TEST_ADDR="+addr1)
		out, err := c.CombinedOutput()
		if err != nil {
			return fmt.Errorf("%v: %s", err, strings.TrimSpace(string(out)))
		}
		return nil
	}
	deadline := time.Now().Add(10 * time.Second)
	for err := dial(); err != nil; err = dial() {
		if time.Now().After(deadline) {
			t.Fatalf("host 0 never reached host 1: %v", err)
		}
	}
	// Host 1 may no longer answer host 0: the dial times out, it is not refused.
	if err := nw.SetDrops([2]int{1, 0}); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err == nil || !strings.Contains(err.Error(), "timeout") {
		t.Fatalf("dial across a one-way cut: %v, want a timeout", err)
	}
	if c, err := net.DialTimeout("tcp", addr1, 2*time.Second); err != nil { // the test process is not cut
		t.Fatalf("from outside the hosts: %v", err)
	} else {
		c.Close()
	}
	if err := nw.SetDrops(); err != nil {
		t.Fatal(err)
	}
	if err := dial(); err != nil {
		t.Fatalf("after healing: %v", err)
	}
}
