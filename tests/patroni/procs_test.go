//go:build linux

package patroni

import (
	"bytes"
	"fmt"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"time"
)

// Patroni starts PostgreSQL the way pg_ctl does: through a helper that
// calls setsid, starts the postmaster and exits, so the postmaster is in
// a session and process group of its own (the helper's) and is nobody's
// child: the kernel hands it to the nearest "child subreaper" ancestor, or
// to PID 1. Whoever gets it must reap it once it exits, or it stays a
// zombie, which Patroni takes for a running postmaster (it polls the PID)
// and waits for: with a PID 1 that reaps late or never (a container
// without an init; this CI VM's reaps every few seconds) every stop of
// PostgreSQL, a switchover's included, would wait on it. So the test
// process is the subreaper of everything it starts, and reaps what it is
// handed at once.

const prSetChildSubreaper = 36 // PR_SET_CHILD_SUBREAPER, linux/prctl.h

func becomeSubreaper() error {
	if _, _, e := syscall.RawSyscall(syscall.SYS_PRCTL, prSetChildSubreaper, 1, 0); e != 0 {
		return e
	}
	return nil
}

// procInfo is what /proc/<pid>/stat says of a process.
type procInfo struct {
	pid, ppid, pgid int
	state           byte
	comm            string
}

func readProc(pid int) (procInfo, bool) {
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/stat")
	if err != nil {
		return procInfo{}, false
	}
	// pid (comm) state ppid pgrp ...; comm may hold spaces and parentheses.
	open, close := bytes.IndexByte(b, '('), bytes.LastIndexByte(b, ')')
	if open < 0 || close < open {
		return procInfo{}, false
	}
	f := strings.Fields(string(b[close+1:]))
	if len(f) < 3 {
		return procInfo{}, false
	}
	p := procInfo{pid: pid, state: f[0][0], comm: string(b[open+1 : close])}
	p.ppid, _ = strconv.Atoi(f[1])
	p.pgid, _ = strconv.Atoi(f[2])
	return p, true
}

func allProcs() []procInfo {
	ents, _ := os.ReadDir("/proc")
	var out []procInfo
	for _, e := range ents {
		pid, err := strconv.Atoi(e.Name())
		if err != nil {
			continue
		}
		if p, ok := readProc(pid); ok {
			out = append(out, p)
		}
	}
	return out
}

func cmdline(pid int) string {
	b, _ := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/cmdline")
	return string(bytes.ReplaceAll(b, []byte{0}, []byte{' '}))
}

// reap waits for the zombies the test process was handed: its exited
// children outside its own process group (the children it starts itself,
// raftkvd, psql and go build, are in its group; os/exec waits for those)
// except the Patroni processes (each leads its own group, and os/exec waits
// for them too). What is left is PostgreSQL's postmaster and, after a
// kill -9 of a whole member, what its killed parents left behind.
func reapLoop() {
	self, own := os.Getpid(), syscall.Getpgrp()
	for {
		for _, p := range allProcs() {
			if p.ppid == self && p.state == 'Z' && p.pgid != own && p.comm != "patroni" {
				var ws syscall.WaitStatus
				syscall.Wait4(p.pid, &ws, syscall.WNOHANG, nil)
			}
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// killGroup sends SIGKILL to process group pgid (never the test's own).
func killGroup(pgid int) {
	if pgid > 1 && pgid != syscall.Getpgrp() {
		syscall.Kill(-pgid, syscall.SIGKILL)
	}
}

// procsMentioning lists the live processes whose command line holds s.
func procsMentioning(s string) []procInfo {
	var out []procInfo
	for _, p := range allProcs() {
		if p.state != 'Z' && strings.Contains(cmdline(p.pid), s) {
			out = append(out, p)
		}
	}
	return out
}

// postmasterPID reads the postmaster's PID from dataDir/postmaster.pid and
// checks that the process is that data dir's postmaster; 0 if none runs.
func postmasterPID(dataDir string) int {
	b, err := os.ReadFile(filepath.Join(dataDir, "postmaster.pid"))
	if err != nil {
		return 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	pid, err := strconv.Atoi(strings.TrimSpace(line))
	if err != nil || pid <= 0 {
		return 0
	}
	if p, ok := readProc(pid); !ok || p.state == 'Z' || !strings.Contains(cmdline(pid), dataDir) {
		return 0
	}
	return pid
}

func describeProcs(ps []procInfo) string {
	var b strings.Builder
	for _, p := range ps {
		fmt.Fprintf(&b, "  pid %d ppid %d pgid %d %c %s\n", p.pid, p.ppid, p.pgid, p.state, cmdline(p.pid))
	}
	return b.String()
}
