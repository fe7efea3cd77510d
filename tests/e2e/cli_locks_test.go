package e2e

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/raftkv/raftkv/internal/testsupport"
)

// background starts raftkv with args and returns the command and a channel
// of its stdout lines.
func (c cli) background(args ...string) (*exec.Cmd, <-chan string, *bytes.Buffer) {
	c.t.Helper()
	cmd := exec.Command(binary(c.t, "raftkv"), append([]string{"--endpoints", c.endpoints}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		c.t.Fatal(err)
	}
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	if err := cmd.Start(); err != nil {
		c.t.Fatal(err)
	}
	c.t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
			cmd.Wait()
		}
	})
	lines := make(chan string, 100)
	go func() {
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			lines <- sc.Text()
		}
		close(lines)
	}()
	return cmd, lines, &stderr
}

func exitStatus(t *testing.T, cmd *exec.Cmd) int {
	t.Helper()
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			return ee.ExitCode()
		} else if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(30 * time.Second):
		t.Fatalf("%v did not exit", cmd.Args)
		return -1
	}
}

func fileExists(path string) error {
	if _, err := os.Stat(path); err != nil {
		return err
	}
	return nil
}

func TestCLISessionsLocksAndElections(t *testing.T) {
	c := startCluster(t, 3)
	k := cli{t: t, endpoints: c.Procs[1].Addr + "," + c.Procs[2].Addr}
	dir := t.TempDir()

	// session create / ls / destroy.
	id := strings.TrimSpace(k.ok("", "session", "create", "--name", "ops", "--ttl", "30s"))
	if out := k.ok("", "session", "ls"); !strings.Contains(out, id) || !strings.Contains(out, "ops") || !strings.Contains(out, "30s") {
		t.Fatalf("session ls: %q", out)
	}
	k.ok("", "session", "destroy", id)
	if out := k.ok("", "session", "ls"); strings.Contains(out, id) {
		t.Fatalf("destroyed session still listed: %q", out)
	}
	k.fails(1, "TTL", "session", "create", "--ttl", "1s")

	// lock passes the command's exit status and environment through.
	out, _, code := k.run("", "lock", "jobs/report", "--", "sh", "-c", `echo "$RAFTKV_LOCK_HELD $RAFTKV_LOCK_INDEX"; exit 3`)
	if code != 3 || !strings.HasPrefix(out, "true ") || strings.TrimSpace(out) == "true 0" {
		t.Fatalf("lock: exit %d, output %q", code, out)
	}
	if out := k.ok("", "ls", "jobs/"); out != "" {
		t.Fatalf("the lock key was left behind: %q", out)
	}

	// Mutual exclusion: the second holder runs only after the first exits.
	first, _, firstErr := k.background("lock", "jobs/nightly", "--", "sh", "-c",
		fmt.Sprintf(`echo held > %[1]s/first; while [ ! -e %[1]s/go ]; do sleep 0.05; done`, dir))
	testsupport.WaitFor(t, 20*time.Second, "first holder runs", func() error { return fileExists(filepath.Join(dir, "first")) })
	second, _, secondErr := k.background("lock", "jobs/nightly", "--", "sh", "-c", fmt.Sprintf(`echo ran > %s/second`, dir))
	testsupport.WaitFor(t, 20*time.Second, "second contender's session", func() error {
		if n := strings.Count(k.ok("", "session", "ls"), "\n") - 1; n != 2 {
			return fmt.Errorf("%d sessions", n)
		}
		return nil
	})
	if fileExists(filepath.Join(dir, "second")) == nil {
		t.Fatal("second holder ran while the first held the lock")
	}
	if err := os.WriteFile(filepath.Join(dir, "go"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	if code := exitStatus(t, first); code != 0 {
		t.Fatalf("first holder: exit %d: %s", code, firstErr)
	}
	if code := exitStatus(t, second); code != 0 {
		t.Fatalf("second holder: exit %d: %s", code, secondErr)
	}
	if err := fileExists(filepath.Join(dir, "second")); err != nil {
		t.Fatal("second holder never ran:", err)
	}

	// Losing the lock (its session destroyed) stops the command with SIGTERM.
	holder, _, holderErr := k.background("lock", "jobs/lost", "--", "sh", "-c",
		fmt.Sprintf(`trap 'exit 7' TERM; echo held > %[1]s/lost; while :; do sleep 0.05; done`, dir))
	testsupport.WaitFor(t, 20*time.Second, "holder runs", func() error { return fileExists(filepath.Join(dir, "lost")) })
	ids := strings.Fields(k.ok("", "session", "ls"))
	if len(ids) < 8 {
		t.Fatalf("session ls: %q", ids)
	}
	k.ok("", "session", "destroy", ids[7]) // the only session: first field after the header
	if code := exitStatus(t, holder); code != 7 || !strings.Contains(holderErr.String(), "lock lost") {
		t.Fatalf("holder after losing the lock: exit %d, stderr %q", code, holderErr)
	}

	// A semaphore of two admits two commands at once.
	var slots []*exec.Cmd
	for i := 0; i < 2; i++ {
		cmd, _, _ := k.background("lock", "-n", "2", "jobs/pool", "--", "sh", "-c",
			fmt.Sprintf(`echo in > %[1]s/slot%[2]d; while [ ! -e %[1]s/slots-go ]; do sleep 0.05; done`, dir, i))
		slots = append(slots, cmd)
	}
	for i := 0; i < 2; i++ {
		testsupport.WaitFor(t, 20*time.Second, "both slots held", func() error { return fileExists(filepath.Join(dir, fmt.Sprintf("slot%d", i))) })
	}
	os.WriteFile(filepath.Join(dir, "slots-go"), nil, 0o644)
	for _, cmd := range slots {
		if code := exitStatus(t, cmd); code != 0 {
			t.Fatalf("semaphore holder: exit %d", code)
		}
	}

	// elect: a watcher sees the leader's value, and "no leader" after it resigns.
	watcher, seen, watchErr := k.background("elect", "svc/primary")
	expect := func(want string) {
		t.Helper()
		select {
		case line := <-seen:
			if line != want {
				t.Fatalf("elect watcher printed %q, want %q", line, want)
			}
		case <-time.After(20 * time.Second):
			t.Fatalf("elect watcher printed nothing for %q; stderr %s", want, watchErr)
		}
	}
	expect("no leader")
	leader, led, leaderErr := k.background("elect", "svc/primary", "db-1")
	select {
	case line := <-led:
		if !strings.HasPrefix(line, "elected: db-1 (term ") {
			t.Fatalf("elect printed %q", line)
		}
	case <-time.After(20 * time.Second):
		t.Fatalf("never elected; stderr %s", leaderErr)
	}
	expect("db-1")
	leader.Process.Signal(syscall.SIGINT)
	if code := exitStatus(t, leader); code != 0 {
		t.Fatalf("resigning leader: exit %d: %s", code, leaderErr)
	}
	expect("no leader")
	watcher.Process.Signal(syscall.SIGINT)
	if code := exitStatus(t, watcher); code != 0 {
		t.Fatalf("watcher: exit %d: %s", code, watchErr)
	}
}
