package main

import (
	"bytes"
	"context"
	"encoding/json"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport/testnode"
	"github.com/raftkv/raftkv/internal/tlsutil"
	"github.com/raftkv/raftkv/raftstore"
)

// What a newcomer meets in their first hour with the CLI, against a node
// in this process.

// startNode runs a one-node cluster (TLS, with client certificates
// demanded, when files are given) and returns its address once it serves.
func startNode(t *testing.T, files tlsutil.Files) string {
	return testnode.Start(t, raftstore.TLSFiles(files), files.CA != "")
}

// raftkvAt runs the CLI against endpoints and returns its exit code,
// stdout and stderr.
func raftkvAt(endpoints, stdin string, args ...string) (int, string, string) {
	var out, errb bytes.Buffer
	code := run(context.Background(), append([]string{"--endpoints", endpoints, "--timeout", "30s"}, args...), strings.NewReader(stdin), &out, &errb)
	return code, out.String(), errb.String()
}

func TestFirstHourWithTheCLI(t *testing.T) {
	addr := startNode(t, tlsutil.Files{})
	must := func(stdin string, args ...string) string {
		t.Helper()
		code, out, errOut := raftkvAt(addr, stdin, args...)
		if code != 0 {
			t.Fatalf("raftkv %s: exit %d: %s", strings.Join(args, " "), code, errOut)
		}
		return out
	}
	failsWith := func(stdin, want string, args ...string) string {
		t.Helper()
		code, out, errOut := raftkvAt(addr, stdin, args...)
		if code != 1 || !strings.Contains(errOut, want) {
			t.Fatalf("raftkv %s: exit %d, stderr %q, want %q (stdout %q)", strings.Join(args, " "), code, errOut, want, out)
		}
		return errOut
	}
	fails := func(want string, args ...string) string {
		t.Helper()
		return failsWith("", want, args...)
	}

	// A value from stdin is stored byte for byte, as consul kv put does,
	// and a trailing newline is pointed out.
	if code, _, errOut := raftkvAt(addr, "shop\n", "put", "app/name", "-"); code != 0 || !strings.Contains(errOut, "ends with a newline, stored with it") {
		t.Fatalf("put from stdin with a newline: exit %d, stderr %q", code, errOut)
	}
	if code, _, errOut := raftkvAt(addr, "shop", "put", "app/other", "-"); code != 0 || errOut != "" {
		t.Fatalf("put from stdin without a newline: exit %d, stderr %q", code, errOut)
	}
	var e struct{ Value []byte }
	if err := json.Unmarshal([]byte(must("", "-o", "json", "get", "app/name")), &e); err != nil || string(e.Value) != "shop\n" {
		t.Fatalf("the value put from stdin: %q %v", e.Value, err)
	}

	// A key with a leading "/" is refused, naming the key, not a URL the
	// CLI made up.
	errOut := fails(`key "/abs/key" begins with "/": keys are relative, as in Consul (did you mean "abs/key"?)`, "put", "/abs/key", "v")
	if strings.Contains(errOut, "/v1/kv") {
		t.Fatalf("the error shows the CLI's URL: %q", errOut)
	}

	if code, _, errOut := raftkvAt(addr, "", "get", ""); code != 2 || !strings.Contains(errOut, "get needs a KEY") {
		t.Fatalf("get of an empty key: exit %d: %q", code, errOut)
	}

	// A lost compare-and-set says whether the key is missing or what its
	// ModifyIndex is now.
	fails(`compare-and-set failed: key "app/none" does not exist (cas=5)`, "put", "--cas", "5", "app/none", "x")
	var cur struct{ ModifyIndex uint64 }
	json.Unmarshal([]byte(must("", "-o", "json", "get", "app/name")), &cur)
	idx := cur.ModifyIndex
	stale := idx - 1
	want := `compare-and-set failed: key "app/name" was modified: its ModifyIndex is now ` + itoa(idx) + `, not ` + itoa(stale)
	fails(want, "put", "--cas", itoa(stale), "app/name", "x")
	fails(want, "del", "--cas", itoa(stale), "app/name")
	fails(`compare-and-set failed: key "app/name" already exists, its ModifyIndex is `+itoa(idx), "put", "--cas", "0", "app/name", "x")
	must("", "put", "--cas", itoa(idx), "app/name", "y")

	// An error names the request (method, path and query) and says its
	// reason once; the token never shows.
	errOut = failsWith(`[{"KV":{"Verb":"bogus","Key":"k"}}]`, "PUT http://"+addr+"/v1/txn: ", "--token", "s3cret", "txn", "-")
	if strings.Contains(errOut, "s3cret") {
		t.Fatalf("the token shows: %q", errOut)
	}
	errOut = fails(`unknown peer: "n9"`, "remove", "n9")
	if strings.Count(errOut, "unknown peer") != 1 {
		t.Fatalf("the reason is repeated: %q", errOut)
	}

	// members --stale needs no leader; here it shows the one node.
	if out := must("", "members", "--stale"); !strings.Contains(out, "n1  "+addr+"  leader  true") || !strings.Contains(out, "stale:") {
		t.Fatalf("members --stale:\n%s", out)
	}

	// bench deletes its keys at the end, unless --keep.
	must("", "put", "other/k", "kept")
	bench := []string{"bench", "--duration", "300ms", "--warmup", "0s", "--clients", "2", "--keys", "20"}
	must("", bench...)
	if out := must("", "ls", "--keys", "bench/"); out != "" {
		t.Fatalf("bench left keys behind:\n%s", out)
	}
	must("", append(bench, "--keep")...)
	if out := must("", "ls", "--keys", "bench/"); out == "" {
		t.Fatal("bench --keep kept no keys")
	}
	if out := must("", "get", "other/k"); out != "kept\n" {
		t.Fatalf("a key outside bench/: %q", out)
	}
}

func itoa(n uint64) string { return strconv.FormatUint(n, 10) }

// A plaintext CLI against a TLS node gives up at once and says to use
// https:// and --cacert, instead of retrying for its whole --timeout.
func TestPlaintextCLIAgainstATLSNode(t *testing.T) {
	dir := t.TempDir()
	ca, err := tlsutil.CreateCA("raftkv CA", time.Hour)
	if err != nil {
		t.Fatal(err)
	}
	pair, err := tlsutil.CreateCert(ca, tlsutil.CertOptions{Name: "n1", Hosts: []string{"127.0.0.1"}, Validity: time.Hour})
	if err != nil {
		t.Fatal(err)
	}
	files := tlsutil.Files{CA: filepath.Join(dir, "ca.pem"), Cert: filepath.Join(dir, "n1.pem"), Key: filepath.Join(dir, "n1-key.pem")}
	if err := ca.WriteFiles(files.CA, filepath.Join(dir, "ca-key.pem")); err != nil {
		t.Fatal(err)
	}
	if err := pair.WriteFiles(files.Cert, files.Key); err != nil {
		t.Fatal(err)
	}
	addr := startNode(t, files)
	for _, args := range [][]string{{"get", "k"}, {"put", "k", "v"}, {"members"}} {
		start := time.Now()
		code, _, errOut := raftkvAt(addr, "", args...)
		if code != 1 || !strings.Contains(errOut, addr+" speaks TLS: use https:// and pass --cacert") {
			t.Fatalf("raftkv %s: exit %d: %q", strings.Join(args, " "), code, errOut)
		}
		if d := time.Since(start); d > 10*time.Second {
			t.Fatalf("raftkv %s gave up after %s (--timeout 30s)", strings.Join(args, " "), d)
		}
	}
	code, _, errOut := raftkvAt(addr, "", "--cacert", files.CA, "get", "k")
	if code != 1 || !strings.Contains(errOut, "the node does not trust this client: pass --cert and --key") {
		t.Fatalf("raftkv --cacert without --cert: exit %d: %q", code, errOut)
	}
}
