package raftstore_test

import (
	"context"
	"errors"
	"fmt"
	"log"
	"os"
	"time"

	"github.com/raftkv/raftkv/raftstore"
)

// The README's quick start for embedders, as written there (a temporary
// data dir and a free port instead of fixed ones).
func Example() {
	dir, err := os.MkdirTemp("", "raftkv-example")
	if err != nil {
		log.Fatal(err)
	}
	defer os.RemoveAll(dir)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	store, err := raftstore.Open(raftstore.Config{
		ID: "n1", Addr: "127.0.0.1:0", DataDir: dir, Bootstrap: true,
	})
	if err != nil {
		log.Fatal(err)
	}
	defer store.Close()
	if _, err := store.WaitForLeader(ctx); err != nil {
		log.Fatal(err)
	}

	idx, err := store.Set(ctx, "config/mode", []byte("active"))
	if err != nil {
		log.Fatal(err)
	}
	e, err := store.Get(ctx, "config/mode") // linearizable
	if err != nil {
		log.Fatal(err)
	}
	fmt.Println(string(e.Value), e.ModifyIndex == idx)
	e, err = store.Get(ctx, "config/mode", raftstore.Stale()) // local, may lag
	if err != nil {
		log.Fatal(err)
	}
	_, err = store.CompareAndSet(ctx, "config/mode", []byte("standby"), e.ModifyIndex)
	fmt.Println(err)
	_, err = store.CompareAndSet(ctx, "config/mode", []byte("again"), e.ModifyIndex)
	fmt.Println(errors.Is(err, raftstore.ErrCASMismatch))
	// Output:
	// active true
	// <nil>
	// true
}

// A node over mutual TLS: the files are named from outside the module, as
// an embedder does (compiled, not run).
func ExampleConfig_tls() {
	_ = raftstore.Config{
		ID: "n1", Addr: "10.0.0.1:7001", DataDir: "/var/lib/myapp/raft",
		TLS: raftstore.TLSFiles{CA: "ca.pem", Cert: "n1.pem", Key: "n1-key.pem"},
	}
}
