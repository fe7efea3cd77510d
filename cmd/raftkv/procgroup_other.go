//go:build !unix

package main

import (
	"io"
	"os"
	"os/exec"
	"syscall"
)

// Elsewhere than on Unix the command alone is stopped: it is killed at
// once (no SIGTERM), and its children are left to it.
func ownGroup(*exec.Cmd, io.Reader) {}

func signalGroup(c *exec.Cmd, sig syscall.Signal) {
	if sig == syscall.SIGKILL {
		_ = c.Process.Kill()
		return
	}
	_ = c.Process.Signal(os.Interrupt)
}
