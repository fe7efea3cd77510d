package loadgen

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

func TestWriteComparison(t *testing.T) {
	dir := t.TempDir()
	put := func(name string, ops, p99 float64, errs int64) {
		r := Result{OpsPerSecond: ops, Errors: map[string]int64{}}
		r.Latency.P99 = p99
		if errs > 0 {
			r.Errors["timeout"] = errs
		}
		b, err := json.Marshal(r)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, name), b, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	// Three repeated runs of one row: medians 200 vs 100, per-run ratios 1.5, 2, 4.
	put("raftkv-write-64-1.json", 300, 10, 0)
	put("etcd-write-64-1.json", 200, 20, 1)
	put("raftkv-write-64-2.json", 200, 30, 0)
	put("etcd-write-64-2.json", 100, 30, 0)
	put("raftkv-write-64-3.json", 100, 20, 2)
	put("etcd-write-64-3.json", 25, 10, 0)
	// A single-run row (old file names) and a row etcd lacks.
	put("raftkv-read-1.json", 50, 4, 0)
	put("etcd-read-1.json", 25, 2, 0)
	put("raftkv-mix90_10-16.json", 10, 1, 0)
	os.WriteFile(filepath.Join(dir, "notes.json"), []byte("{}"), 0o644) // not a result name

	var out strings.Builder
	if err := WriteComparison(&out, dir, "raftkv", "etcd"); err != nil {
		t.Fatal(err)
	}
	lines := strings.Split(strings.TrimSpace(out.String()), "\n")
	want := []string{
		"| read | 1 | 1 | 50 | 25 | **2.00×** | – | 4.00 | 2.00 | 2.00× | 0 / 0 |",
		"| write | 64 | 3 | 200 | 100 | **2.00×** | 1.50–4.00 | 20.00 | 20.00 | 1.00× | 2 / 1 |",
	}
	if len(lines) != 2+len(want) {
		t.Fatalf("table:\n%s", out.String())
	}
	for i, w := range want {
		if lines[2+i] != w {
			t.Errorf("row %d:\n got %s\nwant %s", i, lines[2+i], w)
		}
	}
}
