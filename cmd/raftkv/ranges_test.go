package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"reflect"
	"strings"
	"sync"
	"testing"

	"github.com/raftkv/raftkv/client"
	"github.com/raftkv/raftkv/internal/wire"
)

var testRanges = []client.Range{
	{ID: 0, End: "m/", Generation: 3, Replicas: []client.RangeReplica{{Node: "n1", Voter: true}, {Node: "n2", Voter: true}, {Node: "n3"}},
		Leader: "n1", Keys: 1200, Bytes: 3 << 20, WritesPerSec: 12.2},
	{ID: 7, Start: "m/", End: "my key/", Generation: 3, Replicas: []client.RangeReplica{{Node: "n2", Voter: true}}, Keys: 3, Bytes: 100},
	{ID: 9, Start: "my key/", End: "z/", Generation: 1, Replicas: []client.RangeReplica{{Node: "n1", Voter: true}}, Leader: "n1"},
	{ID: 12, Start: "z/", Generation: 2, Replicas: []client.RangeReplica{{Node: "n1", Voter: true}}, FromMeta: true},
}

func TestRangeTable(t *testing.T) {
	var b bytes.Buffer
	printRanges(&b, testRanges)
	want := `ID  START      END        GEN  REPLICAS      LEADER      KEYS  BYTES   WRITES/S
0   ""         m/         3    n1,n2,n3(nv)  n1          1200  3.0MiB  12.2
7   m/         "my key/"  3    n2            -           3     100B    0.0
9   "my key/"  z/         1    n1            n1          0     0B      0.0
12  z/         ∞          2    n1            (not here)  -     -       -
`
	if b.String() != want {
		t.Fatalf("table:\n%s\nwant:\n%s", b.String(), want)
	}
	for n, want := range map[int64]string{0: "0B", 1023: "1023B", 1024: "1.0KiB", 1536: "1.5KiB", 5 << 30: "5.0GiB"} {
		if got := showBytes(n); got != want {
			t.Errorf("showBytes(%d) = %q, want %q", n, got, want)
		}
	}
	if got := showReplicas(nil); got != "-" {
		t.Errorf("no replicas shown as %q", got)
	}
}

// fakeRangeNode answers the range endpoints as a node does: a split of
// "m/" succeeds, any other key is refused as the node would refuse it,
// and with oneRange it is a node that runs the keyspace as one range.
type fakeRangeNode struct {
	oneRange bool
	mu       sync.Mutex
	splits   []string
	kept     []string
}

func (n *fakeRangeNode) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	refuse := func(status int, code, msg string) {
		w.Header().Set(wire.HeaderError, code)
		w.WriteHeader(status)
		w.Write([]byte(msg + "\n"))
	}
	n.mu.Lock()
	oneRange := n.oneRange
	n.mu.Unlock()
	switch {
	case r.URL.Path == "/v1/operator/ranges" && r.Method == http.MethodGet:
		if oneRange {
			w.Write([]byte("[]\n"))
			return
		}
		json.NewEncoder(w).Encode(testRanges)
	case r.URL.Path == "/v1/operator/range/split" && r.Method == http.MethodPost:
		key := r.URL.Query().Get("key")
		n.mu.Lock()
		n.splits = append(n.splits, key)
		n.mu.Unlock()
		switch {
		case oneRange:
			refuse(501, "not_implemented", "not implemented: this node runs the keyspace as one range and cannot split it")
		case key != "m/":
			refuse(400, "invalid", `invalid request: split key "`+key+`" must end with "/"`)
		default:
			json.NewEncoder(w).Encode(client.RangeSplit{Left: testRanges[0], Right: testRanges[1]})
		}
	case r.URL.Path == "/v1/operator/range/keep-whole" && (r.Method == http.MethodPut || r.Method == http.MethodDelete):
		n.mu.Lock()
		n.kept = append(n.kept, r.Method+" "+r.URL.Query().Get("prefix"))
		n.mu.Unlock()
		w.Write([]byte("true\n"))
	default:
		refuse(404, "no_such_endpoint", "no such endpoint "+r.URL.Path)
	}
}

func TestRangeCommands(t *testing.T) {
	node := &fakeRangeNode{}
	srv := httptest.NewServer(node)
	defer srv.Close()
	raftkv := func(args ...string) (int, string, string) { return raftkvAt(srv.URL, "", args...) }

	if code, out, errOut := raftkv("range", "keep-whole", "svc/web/"); code != 0 || !strings.Contains(out, `svc/web/ is kept in one range`) {
		t.Fatalf("range keep-whole: exit %d, %q, %q", code, out, errOut)
	}
	if code, _, errOut := raftkv("range", "keep-whole", "--release", "svc/web/"); code != 0 {
		t.Fatalf("range keep-whole --release: exit %d, %q", code, errOut)
	}
	if fmt.Sprint(node.kept) != "[PUT svc/web/ DELETE svc/web/]" {
		t.Fatalf("the node saw %v", node.kept)
	}

	code, out, errOut := raftkv("range", "ls")
	var table bytes.Buffer
	printRanges(&table, testRanges)
	if code != 0 || out != table.String() {
		t.Fatalf("range ls: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	code, out, _ = raftkv("-o", "json", "range", "ls")
	var rs []client.Range
	if err := json.Unmarshal([]byte(out), &rs); code != 0 || err != nil || !reflect.DeepEqual(rs, testRanges) {
		t.Fatalf("range ls -o json: exit %d: %v\n%s", code, err, out)
	}

	code, out, errOut = raftkv("range", "split", "m/")
	if code != 0 || !strings.HasPrefix(out, "split range 0 at m/: range 7 is new\nID ") || strings.Count(out, "\n") != 4 {
		t.Fatalf("range split: exit %d, stderr %q, stdout:\n%s", code, errOut, out)
	}
	code, out, _ = raftkv("-o", "json", "range", "split", "m/")
	var s client.RangeSplit
	if err := json.Unmarshal([]byte(out), &s); code != 0 || err != nil || s.Right.ID != 7 || s.Left.End != "m/" {
		t.Fatalf("range split -o json: exit %d: %v\n%s", code, err, out)
	}
	// The node's refusal, said once, exit 1.
	code, _, errOut = raftkv("range", "split", "m")
	if code != 1 || strings.Count(errOut, `must end with "/"`) != 1 {
		t.Fatalf("a refused split: exit %d: %q", code, errOut)
	}
	// Usage errors, exit 2, and nothing sent.
	for _, args := range [][]string{{"range", "split"}, {"range", "split", ""}, {"range", "split", "a/", "b/"}, {"range", "ls", "x"}} {
		if code, _, errOut := raftkv(args...); code != 2 {
			t.Errorf("raftkv %q: exit %d: %q", args, code, errOut)
		}
	}
	node.mu.Lock()
	splits := append([]string(nil), node.splits...)
	node.oneRange = true // from here on, a node that runs the keyspace as one range
	node.mu.Unlock()
	if !reflect.DeepEqual(splits, []string{"m/", "m/", "m"}) {
		t.Fatalf("splits the node saw: %q", splits)
	}

	if code, out, _ := raftkv("range", "ls"); code != 0 || !strings.Contains(out, "no ranges listed") {
		t.Fatalf("range ls of one range: exit %d: %q", code, out)
	}
	if code, out, _ := raftkv("-o", "json", "range", "ls"); code != 0 || out != "[]\n" {
		t.Fatalf("range ls -o json of one range: exit %d: %q", code, out)
	}
	if code, _, errOut := raftkv("range", "split", "m/"); code != 1 || !strings.Contains(errOut, "runs the keyspace as one range") {
		t.Fatalf("range split on one range: exit %d: %q", code, errOut)
	}
}
