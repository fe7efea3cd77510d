package diskguard

import (
	"os"
	"path/filepath"
	"syscall"
	"testing"
)

// The newest file a library maps sparse and fills later is allocated (the
// part asked for); older ones are left alone.
func TestKeepAllocatesTheNewestSparseFile(t *testing.T) {
	dir := t.TempDir()
	sparse := func(name string) string {
		path := filepath.Join(dir, name)
		if err := os.WriteFile(path, nil, 0o644); err != nil {
			t.Fatal(err)
		}
		if err := os.Truncate(path, 4<<20); err != nil {
			t.Fatal(err)
		}
		return path
	}
	old, newest := sparse("00001.mem"), sparse("00002.mem")
	if blocks(t, newest) != 0 {
		t.Skip("the file system does not make sparse files")
	}
	if _, err := Open(dir, Options{Reserve: 1 << 20, Keep: []Keep{{"*.mem", 0.5}}, Available: (&disk{available: 100 << 20}).read}); err != nil {
		t.Fatal(err)
	}
	if got := blocks(t, newest) * 512; got < 2<<20 || got >= 4<<20 {
		t.Fatalf("%d bytes of the newest file allocated, want its first half", got)
	}
	if blocks(t, old) != 0 {
		t.Fatal("an older file was allocated")
	}
}

func blocks(t *testing.T, path string) int64 {
	var st syscall.Stat_t
	if err := syscall.Stat(path, &st); err != nil {
		t.Fatal(err)
	}
	return st.Blocks
}
