//go:build unix

package main

import (
	"io"
	"os"
	"os/exec"
	"syscall"
)

// ownGroup puts the command in a process group of its own, signalled as a
// whole: a shell's children must stop with it, or they would go on running
// after the lock is lost. Not when it reads a terminal: in a group of its
// own it would be stopped (SIGTTIN) the first time it reads, holding the
// lock; then only the command itself is signalled.
func ownGroup(c *exec.Cmd, stdin io.Reader) {
	if f, ok := stdin.(*os.File); ok {
		if fi, err := f.Stat(); err == nil && fi.Mode()&os.ModeCharDevice != 0 {
			return
		}
	}
	c.SysProcAttr = &syscall.SysProcAttr{Setpgid: true}
}

func signalGroup(c *exec.Cmd, sig syscall.Signal) {
	if c.SysProcAttr != nil && c.SysProcAttr.Setpgid {
		_ = syscall.Kill(-c.Process.Pid, sig)
		return
	}
	_ = c.Process.Signal(sig)
}
