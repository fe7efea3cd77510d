package e2e

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
	"github.com/raftkv/raftkv/internal/testsupport/proccluster"
)

// cli runs the raftkv binary and returns stdout, stderr and the exit code.
type cli struct {
	t         *testing.T
	endpoints string
}

func (c cli) run(stdin string, args ...string) (string, string, int) {
	c.t.Helper()
	cmd := exec.Command(binary(c.t, "raftkv"), append([]string{"--endpoints", c.endpoints, "--timeout", "20s"}, args...)...)
	cmd.Stdin = strings.NewReader(stdin)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	var ee *exec.ExitError
	if errors.As(err, &ee) {
		code = ee.ExitCode()
	} else if err != nil {
		c.t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// ok runs a command that must succeed and returns its stdout.
func (c cli) ok(stdin string, args ...string) string {
	c.t.Helper()
	out, errOut, code := c.run(stdin, args...)
	if code != 0 {
		c.t.Fatalf("raftkv %s: exit %d\n%s%s", strings.Join(args, " "), code, out, errOut)
	}
	return out
}

// fails runs a command that must exit with code and mention want on stderr.
func (c cli) fails(code int, want string, args ...string) {
	c.t.Helper()
	out, errOut, got := c.run("", args...)
	if got != code || !strings.Contains(errOut, want) {
		c.t.Fatalf("raftkv %s: exit %d (want %d), stderr %q (want %q), stdout %q", strings.Join(args, " "), got, code, errOut, want, out)
	}
}

func TestCLIAgainstThreeNodes(t *testing.T) {
	c := startCluster(t, 3)
	// The first endpoint is down: every command below fails over.
	dead := "127.0.0.1:" + strconv.Itoa(proccluster.FreePort(t))
	k := cli{t: t, endpoints: dead + "," + c.Procs[1].Addr + "," + c.Procs[2].Addr}

	// put / get, stdin, flags, json output.
	if out := k.ok("", "put", "app/name", "shop"); out != "OK\n" {
		t.Fatalf("put: %q", out)
	}
	if out := k.ok("", "get", "app/name"); out != "shop\n" {
		t.Fatalf("get: %q", out)
	}
	k.ok("from stdin", "put", "app/stdin", "-")
	k.ok("also stdin", "put", "app/stdin2")
	if out := k.ok("", "get", "--stale", "app/stdin"); out != "from stdin\n" {
		t.Fatalf("stdin put: %q", out)
	}
	k.ok("", "put", "--flags", "42", "app/flagged", "x")
	var entry struct {
		Key         string
		Value       []byte
		Flags       uint64
		ModifyIndex uint64
	}
	if err := json.Unmarshal([]byte(k.ok("", "-o", "json", "get", "app/flagged")), &entry); err != nil || entry.Flags != 42 || string(entry.Value) != "x" {
		t.Fatalf("get -o json: %+v %v", entry, err)
	}
	k.fails(1, "not found", "get", "app/missing")

	// CAS: a win, and a loss that exits 1 with a clear message.
	k.ok("", "put", "--cas", strconv.Itoa(int(entry.ModifyIndex)), "app/flagged", "y")
	k.fails(1, `compare-and-set failed: key "app/flagged" was modified: its ModifyIndex is now `, "put", "--cas", strconv.Itoa(int(entry.ModifyIndex)), "app/flagged", "z")
	k.fails(1, `compare-and-set failed: key "app/flagged" already exists`, "put", "--cas", "0", "app/flagged", "z")
	k.fails(1, `compare-and-set failed: key "app/none" does not exist (cas=3)`, "put", "--cas", "3", "app/none", "z")

	// ls, keys with a separator.
	k.ok("", "put", "app/db/host", "db1")
	k.ok("", "put", "app/db/port", "5432")
	if out := k.ok("", "ls", "--keys", "--separator", "/", "app/"); out != "app/db/\napp/flagged\napp/name\napp/stdin\napp/stdin2\n" {
		t.Fatalf("ls --keys --separator: %q", out)
	}
	if out := k.ok("", "ls", "app/db/"); !strings.Contains(out, "app/db/host") || !strings.Contains(out, "5432") {
		t.Fatalf("ls: %q", out)
	}
	var listed []struct{ Key string }
	if err := json.Unmarshal([]byte(k.ok("", "-o", "json", "ls", "app/db/")), &listed); err != nil || len(listed) != 2 {
		t.Fatalf("ls -o json: %v %v", listed, err)
	}

	// del, --cas, --recurse.
	k.fails(1, `compare-and-set failed: key "app/name" was modified`, "del", "--cas", "1", "app/name")
	k.ok("", "del", "app/name")
	k.fails(1, "not found", "get", "app/name")
	k.ok("", "del", "--recurse", "app/db/")
	if out := k.ok("", "ls", "--keys", "app/db/"); out != "" {
		t.Fatalf("after del --recurse: %q", out)
	}

	// txn from a file and from stdin; a failing check exits 1.
	txnFile := filepath.Join(t.TempDir(), "txn.json")
	os.WriteFile(txnFile, []byte(`[{"KV":{"Verb":"set","Key":"t/a","Value":"MQ=="}},{"KV":{"Verb":"get","Key":"t/a"}}]`), 0o644)
	if out := k.ok("", "txn", txnFile); !strings.Contains(out, "OK (2 results)") {
		t.Fatalf("txn: %q", out)
	}
	_, errOut, code := k.run(`[{"KV":{"Verb":"check-not-exists","Key":"t/a"}}]`, "txn", "-")
	if code != 1 || !strings.Contains(errOut, "rolled back") {
		t.Fatalf("failing txn: exit %d, %q", code, errOut)
	}

	// Cluster commands.
	leader := strings.TrimSpace(k.ok("", "leader"))
	if members := k.ok("", "members"); strings.Count(members, "127.0.0.1:") != 3 || !strings.Contains(members, leader+"  leader") {
		t.Fatalf("members (leader %s):\n%s", leader, members)
	}
	k.ok("", "transfer-leader")
	testsupport.WaitFor(t, 20*time.Second, "a new leader", func() error {
		if l := strings.TrimSpace(k.ok("", "leader")); l == leader {
			return errors.New("leadership did not move")
		}
		return nil
	})
	extra := c.AddBare()
	k.ok("", "join", extra.ID, extra.Addr)
	// A joined server is shown, and becomes a healthy voter once stable.
	testsupport.WaitFor(t, 20*time.Second, "the joined server a healthy voter", func() error {
		members := k.ok("", "members")
		for _, line := range strings.Split(members, "\n") {
			if f := strings.Fields(line); len(f) == 7 && f[0] == extra.ID && f[2] == "follower" && f[3] == "true" && f[4] == "true" {
				return nil
			}
		}
		return fmt.Errorf("members:\n%s", members)
	})
	k.ok("", "remove", extra.ID)
	testsupport.WaitFor(t, 20*time.Second, "the removed server gone", func() error {
		if members := k.ok("", "members"); strings.Count(members, "127.0.0.1:") != 3 || !strings.Contains(members, "healthy: true, failure tolerance: 1") {
			return fmt.Errorf("after remove:\n%s", members)
		}
		return nil
	})
	k.fails(1, "not a member", "remove", "nobody")

	// Snapshot save, change things, restore: back to the saved state.
	snap := filepath.Join(t.TempDir(), "backup.snap")
	if out := k.ok("", "snapshot", "save", snap); !strings.Contains(out, "saved") {
		t.Fatalf("snapshot save: %q", out)
	}
	k.ok("", "put", "after-backup", "x")
	k.ok("", "snapshot", "restore", snap)
	k.fails(1, "not found", "get", "after-backup")
	if out := k.ok("", "get", "t/a"); out != "1\n" {
		t.Fatalf("after restore: %q", out)
	}

	// bench: a short closed-loop run and an open-loop one, JSON out.
	out := k.ok("", "bench", "--duration", "1s", "--warmup", "0s", "--clients", "4", "--mix", "read=50,write=40,cas=10")
	if !strings.Contains(out, "throughput") || !strings.Contains(out, "p99") {
		t.Fatalf("bench output: %q", out)
	}
	var res struct {
		Ops    int64
		Errors map[string]int64
	}
	report := filepath.Join(t.TempDir(), "report.html")
	if err := json.Unmarshal([]byte(k.ok("", "-o", "json", "bench", "--duration", "1s", "--warmup", "0s", "--rate", "100", "--target", "leader", "--report", report)), &res); err != nil || res.Ops == 0 {
		t.Fatalf("bench -o json: %+v %v", res, err)
	}
	if html, err := os.ReadFile(report); err != nil || !strings.Contains(string(html), "<svg") {
		t.Fatalf("bench --report: %v", err)
	}
	k.fails(2, "adds up to", "bench", "--mix", "read=50")

	// Usage errors exit 2.
	k.fails(2, "accepts 1 arg", "get")
	k.fails(2, "unknown flag", "get", "--bogus", "x")
	k.fails(2, "unknown command", "frobnicate")
	dead2 := cli{t: t, endpoints: dead}
	start := time.Now()
	dead2.fails(1, "no node reachable for 5s", "get", "x")
	if d := time.Since(start); d > 15*time.Second {
		t.Fatalf("a CLI call to a dead endpoint took %s (its --timeout is 20s)", d)
	}
	if out := k.ok("", "version"); !strings.HasPrefix(out, "raftkv ") {
		t.Fatalf("version: %q", out)
	}
	k.fails(2, "either a KEY or --prefix", "watch")
}

func TestCLIWatchPrintsEveryChange(t *testing.T) {
	c := startCluster(t, 3)
	k := cli{t: t, endpoints: c.Procs[0].Addr + "," + c.Procs[1].Addr}
	k.ok("", "put", "cfg/a", "1")
	watch, lines, stderr := cli{t: t, endpoints: c.Procs[2].Addr}.background("watch", "--prefix", "cfg/")
	expect := func(want string) {
		t.Helper()
		select {
		case line := <-lines:
			if !strings.Contains(line, want) {
				t.Fatalf("watch printed %q, want %q", line, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("watch printed nothing for %q; stderr: %s", want, stderr.String())
		}
	}
	expect("cfg/a\t1")
	k.ok("", "put", "cfg/b", "2")
	expect("cfg/b\t2")
	k.ok("", "put", "cfg/a", "3")
	expect("cfg/a\t3")
	k.ok("", "put", "elsewhere", "x") // not under the prefix: nothing printed
	k.ok("", "del", "cfg/b")
	expect("cfg/b\t(deleted)")
	// Ctrl-C ends it with status 0.
	watch.Process.Signal(syscall.SIGINT)
	if err := watch.Wait(); err != nil {
		t.Fatalf("watch after SIGINT: %v (stderr %s)", err, stderr.String())
	}
	for line := range lines {
		t.Fatalf("unexpected output %q", line)
	}
}
