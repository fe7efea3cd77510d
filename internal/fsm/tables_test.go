package fsm

import (
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strconv"
	"testing"
	"time"

	"github.com/hashicorp/raft"
)

// Any byte flipped in any of Badger's files makes Open fail with an error
// naming the file, or the state reads back intact; it never panics and
// never opens wrong. Badger alone panicked in its own goroutines on
// damaged tables (a nil dereference while reporting a bad block, slice
// bounds while reading an index), and opened without the tables a
// damaged manifest's last change set added.
func TestDamagedFilesNeverPanicOrOpenWrong(t *testing.T) {
	template := t.TempDir()
	f := mustOpen(t, template)
	var logs []*raft.Log
	for i := uint64(1); i <= 300; i++ {
		logs = append(logs, entry(i, set(fmt.Sprintf("key/%04d", i), fmt.Sprintf("value %d", i))))
	}
	f.ApplyBatch(logs)
	want := dump(t, f)
	if err := f.Close(); err != nil { // flushes the memtable into a table
		t.Fatal(err)
	}
	files, _ := os.ReadDir(template)
	if tables, _ := filepath.Glob(filepath.Join(template, "*.sst")); len(tables) == 0 {
		t.Fatal("no table written")
	}
	seed := uint64(time.Now().UnixNano())
	if v, err := strconv.ParseUint(os.Getenv("RAFTKV_FLIP_SEED"), 10, 64); err == nil {
		seed = v
	}
	t.Logf("seed %d (replay with RAFTKV_FLIP_SEED=%d)", seed, seed)
	rnd := rand.New(rand.NewPCG(seed, 2))
	outcomes := map[string]*[2]int{} // file kind → refused, opened intact
	for range 200 {
		dir := t.TempDir()
		copyFiles(t, template, dir)
		name := files[rnd.IntN(len(files))].Name()
		path := filepath.Join(dir, name)
		b, err := os.ReadFile(path)
		if err != nil || len(b) == 0 {
			continue
		}
		b[rnd.IntN(len(b))] ^= byte(1 << rnd.IntN(8))
		if err := os.WriteFile(path, b, 0o644); err != nil {
			t.Fatal(err)
		}
		kind := filepath.Ext(name)
		if kind == "" {
			kind = name
		}
		if outcomes[kind] == nil {
			outcomes[kind] = &[2]int{}
		}
		g, err := Open(dir, Options{Small: true})
		if err != nil {
			outcomes[kind][0]++
			continue
		}
		if got := dump(t, g); got != want {
			t.Fatalf("a flipped bit in %s: opened, and reads back wrong", name)
		}
		g.Close()
		outcomes[kind][1]++
	}
	for kind, o := range outcomes {
		t.Logf("%s: %d refused, %d opened intact", kind, o[0], o[1])
	}
}

func copyFiles(t *testing.T, from, to string) {
	t.Helper()
	entries, err := os.ReadDir(from)
	if err != nil {
		t.Fatal(err)
	}
	for _, e := range entries {
		if e.IsDir() {
			continue
		}
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(to, e.Name()), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
}
