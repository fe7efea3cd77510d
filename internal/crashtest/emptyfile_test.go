package crashtest

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/raftkv/raftkv/internal/fsm"
)

// TestFSMOpensAfterCrashCreatingLogFile pins down, deterministically, a
// crash state the crash loop reaches (typically in a restore, whose DropAll
// starts a new memtable and a new value log): Badger creates such a file and
// then sizes it; a crash in between leaves it empty, and Badger's Open then
// fails with "Create a new file" (dgraph-io/badger#2207; a second Open
// succeeds). A node must start after any crash.
func TestFSMOpensAfterCrashCreatingLogFile(t *testing.T) {
	// Badger's names: memtables 00001.mem..., value logs 000001.vlog...
	// A table written before the manifest change set that would have added
	// it (a flush or a restore cut short) is a stray, empty or half-written:
	// Badger deletes it, and it is no damage.
	strays := map[string][]byte{"99999.mem": nil, "999999.vlog": nil, "999999.sst": nil, "999998.sst": []byte("half a table")}
	for name, content := range strays {
		t.Run(name, func(t *testing.T) {
			dir := t.TempDir()
			f, err := fsm.Open(dir, fsm.Options{Small: true})
			if err != nil {
				t.Fatalf("open: %v", err)
			}
			f.ApplyBatch(logsUpTo(3))
			if err := f.Close(); err != nil {
				t.Fatal(err)
			}
			if err := os.WriteFile(filepath.Join(dir, name), content, 0o644); err != nil {
				t.Fatal(err)
			}
			f, err = fsm.Open(dir, fsm.Options{Small: true})
			if err != nil {
				t.Fatalf("open after a crash that left %s empty: %v", name, err)
			}
			defer f.Close()
			if got := f.AppliedIndex(); got != 3 {
				t.Fatalf("applied index %d after the restart, want 3", got)
			}
		})
	}
}
