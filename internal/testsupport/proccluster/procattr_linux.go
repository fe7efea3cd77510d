package proccluster

import "syscall"

// procAttr makes the kernel kill a node when the test process dies, so that
// a crashed or interrupted test leaves no raftkvd behind.
func procAttr() *syscall.SysProcAttr { return &syscall.SysProcAttr{Pdeathsig: syscall.SIGKILL} }
